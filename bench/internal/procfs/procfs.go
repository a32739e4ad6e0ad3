// Package procfs reads memory and CPU use of a process tree from /proc
// (Linux).
package procfs

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Mem is a process's memory in KiB, from /proc/PID/status.
type Mem struct {
	RSS int64 // VmRSS: resident now
	HWM int64 // VmHWM: peak resident
}

// Add sums two Mems.
func (m Mem) Add(o Mem) Mem { return Mem{RSS: m.RSS + o.RSS, HWM: m.HWM + o.HWM} }

// ParseStatus reads VmRSS and VmHWM from the text of /proc/PID/status.
func ParseStatus(r io.Reader) (Mem, error) {
	var m Mem
	var seen int
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return Mem{}, fmt.Errorf("status: bad %s line %q", k, v)
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return Mem{}, fmt.Errorf("status: %s: %v", k, err)
		}
		if k == "VmRSS" {
			m.RSS = n
		} else {
			m.HWM = n
		}
		seen++
	}
	if err := sc.Err(); err != nil {
		return Mem{}, err
	}
	if seen != 2 {
		return Mem{}, fmt.Errorf("status: no VmRSS/VmHWM (kernel thread or zombie?)")
	}
	return m, nil
}

// ProcMem reads one process's Mem.
func ProcMem(pid int) (Mem, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Mem{}, err
	}
	return ParseStatus(bytes.NewReader(b))
}

// statFields returns the fields of /proc/PID/stat text after the command
// name, so that f[0] is field 3 (state) of proc(5). The command name
// (field 2) may hold spaces and parentheses, so fields are counted after
// its last ')'. It fails if there are fewer than n.
func statFields(stat string, n int) ([]string, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return nil, fmt.Errorf("stat: no command name")
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < n {
		return nil, fmt.Errorf("stat: too few fields")
	}
	return f, nil
}

// ParsePPID returns the parent pid (field 4) from the text of
// /proc/PID/stat.
func ParsePPID(stat string) (int, error) {
	f, err := statFields(stat, 2)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(f[1])
}

// ParseCPU returns utime + stime (fields 14 and 15, in clock ticks) from
// the text of /proc/PID/stat: the CPU time of all the process's threads,
// not of its waited-for children (cutime, cstime).
func ParseCPU(stat string) (int64, error) {
	f, err := statFields(stat, 13)
	if err != nil {
		return 0, err
	}
	u, err := strconv.ParseInt(f[11], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stat: utime: %v", err)
	}
	s, err := strconv.ParseInt(f[12], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stat: stime: %v", err)
	}
	return u + s, nil
}

// atClkTck is the auxiliary vector's AT_CLKTCK key (linux/auxvec.h).
const atClkTck = 17

// ParseAuxv returns AT_CLKTCK from the contents of /proc/self/auxv: native
// (key, value) words of wordSize bytes, ending with key 0. It is what
// glibc's sysconf(_SC_CLK_TCK) returns; ok is false if the vector has no
// such entry.
func ParseAuxv(b []byte, wordSize int) (hz int64, ok bool) {
	word := func(p []byte) uint64 {
		if wordSize == 4 {
			return uint64(binary.NativeEndian.Uint32(p))
		}
		return binary.NativeEndian.Uint64(p)
	}
	for ; len(b) >= 2*wordSize; b = b[2*wordSize:] {
		switch k := word(b); k {
		case 0:
			return 0, false
		case atClkTck:
			return int64(word(b[wordSize:])), true
		}
	}
	return 0, false
}

// ClockTicks returns the units of /proc/PID/stat's CPU times per second:
// sysconf(_SC_CLK_TCK), read from this process's auxiliary vector, or
// Linux's USER_HZ, 100, if that cannot be read.
var ClockTicks = sync.OnceValue(func() int64 {
	b, err := os.ReadFile("/proc/self/auxv")
	if err != nil {
		return 100
	}
	if hz, ok := ParseAuxv(b, strconv.IntSize/8); ok && hz > 0 {
		return hz
	}
	return 100
})

// ProcCPU reads one process's CPU time, user plus system.
func ProcCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	ticks, err := ParseCPU(string(b))
	if err != nil {
		return 0, err
	}
	return time.Duration(ticks) * time.Second / time.Duration(ClockTicks()), nil
}

// Tree returns pid and all its descendants.
func Tree(pid int) []int {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	children := map[int][]int{}
	for _, d := range dirs {
		p, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		b, err := os.ReadFile(d + "/stat")
		if err != nil {
			continue
		}
		pp, err := ParsePPID(string(b))
		if err != nil {
			continue
		}
		children[pp] = append(children[pp], p)
	}
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

// TreeMem sums Mem over pid and its descendants (nginx's master and
// workers, say). Shared pages are counted once per process, so for a
// multi-process server it is an upper bound.
func TreeMem(pid int) (Mem, error) {
	var total Mem
	for i, p := range Tree(pid) {
		m, err := ProcMem(p)
		if err != nil {
			if i == 0 {
				return Mem{}, err
			}
			continue // a child that just exited
		}
		total = total.Add(m)
	}
	return total, nil
}

// TreeCPU sums CPU time over pid and its descendants (nginx's master and
// workers, say). A child counts while it lives: the time of one that exits
// between two readings goes to its parent's cutime, which is not read.
func TreeCPU(pid int) (time.Duration, error) {
	var total time.Duration
	for i, p := range Tree(pid) {
		d, err := ProcCPU(p)
		if err != nil {
			if i == 0 {
				return 0, err
			}
			continue // a child that just exited
		}
		total += d
	}
	return total, nil
}
