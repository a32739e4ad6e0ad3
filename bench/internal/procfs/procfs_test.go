package procfs

import (
	"os"
	"strings"
	"testing"
)

func TestParseStatus(t *testing.T) {
	in := "Name:\tx\nVmPeak:\t 9 kB\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\nThreads:\t1\n"
	got, err := ParseStatus(strings.NewReader(in))
	if err != nil || got != (Mem{RSS: 1024, HWM: 2048}) {
		t.Errorf("ParseStatus = %+v, %v, want RSS 1024 HWM 2048", got, err)
	}
	if _, err := ParseStatus(strings.NewReader("Name:\tkthread\n")); err == nil {
		t.Errorf("ParseStatus without Vm lines: want error")
	}
}

func TestParsePPID(t *testing.T) {
	tests := []struct {
		stat string
		want int
	}{
		{"123 (nginx) S 45 123 123 0", 45},
		{"7 (a) b) (c) R 1 7 7 0", 1},
	}
	for _, tt := range tests {
		if got, err := ParsePPID(tt.stat); err != nil || got != tt.want {
			t.Errorf("ParsePPID(%q) = %d, %v, want %d", tt.stat, got, err, tt.want)
		}
	}
}

func TestSelf(t *testing.T) {
	m, err := TreeMem(os.Getpid())
	if err != nil || m.RSS <= 0 || m.HWM < m.RSS {
		t.Errorf("TreeMem(self) = %+v, %v, want 0 < RSS <= HWM", m, err)
	}
}
