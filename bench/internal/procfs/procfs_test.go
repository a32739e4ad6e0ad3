package procfs

import (
	"encoding/binary"
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

// Issue 14: CPU time from /proc/PID/stat for the S2 and S3 tables.
func TestParseCPU(t *testing.T) {
	tests := []struct {
		name string
		stat string
		want int64
	}{
		// utime 250 + stime 75; cutime and cstime (9, 8) are the
		// children's and must not count.
		{"plain", "4242 (nginx) S 1 4242 4242 0 -1 4194560 1234 0 5 0 250 75 9 8 20 0 4 0 12345\n", 325},
		{"spaces and parens", "4242 (web (x) s) r) S 1 4242 4242 0 -1 4194560 1234 0 5 0 250 75 9 8 20 0 4 0 12345\n", 325},
		{"name like fields", "7 (1 2 3) 4 5) R 1 7 7 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 1", 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, err := ParseCPU(tt.stat); err != nil || got != tt.want {
				t.Errorf("ParseCPU(%q) = %d, %v, want %d", tt.stat, got, err, tt.want)
			}
		})
	}
	for _, bad := range []string{"", "4242 nginx S 1", "4242 (nginx) S 1 4242 4242 0", "4242 (a) S 1 2 3 4 5 6 7 8 9 10 x 75"} {
		if got, err := ParseCPU(bad); err == nil {
			t.Errorf("ParseCPU(%q) = %d, nil, want an error", bad, got)
		}
	}
}

func TestParseAuxv(t *testing.T) {
	vec := func(size int, kv ...uint64) []byte {
		var b []byte
		for _, w := range kv {
			if size == 4 {
				b = binary.NativeEndian.AppendUint32(b, uint32(w))
			} else {
				b = binary.NativeEndian.AppendUint64(b, w)
			}
		}
		return b
	}
	tests := []struct {
		name   string
		b      []byte
		size   int
		want   int64
		wantOK bool
	}{
		{"64-bit", vec(8, 6, 4096, atClkTck, 100, 0, 0), 8, 100, true},
		{"32-bit", vec(4, 6, 4096, atClkTck, 250, 0, 0), 4, 250, true},
		{"missing", vec(8, 6, 4096, 0, 0), 8, 0, false},
		{"after the end", vec(8, 0, 0, atClkTck, 100), 8, 0, false},
		{"truncated", vec(8, 6)[:4], 8, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, ok := ParseAuxv(tt.b, tt.size); got != tt.want || ok != tt.wantOK {
				t.Errorf("ParseAuxv = %d, %v, want %d, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestSelfCPU(t *testing.T) {
	if hz := ClockTicks(); hz <= 0 {
		t.Fatalf("ClockTicks() = %d, want > 0", hz)
	}
	first, err := TreeCPU(os.Getpid())
	if err != nil || first < 0 {
		t.Fatalf("TreeCPU(self) = %v, %v, want >= 0", first, err)
	}
	if again, err := TreeCPU(os.Getpid()); err != nil || again < first {
		t.Errorf("TreeCPU(self) again = %v, %v, want >= %v", again, err, first)
	}
	if _, err := TreeCPU(-1); err == nil {
		t.Errorf("TreeCPU(-1): want error")
	}
}
