// Package procfs reads memory use of a process tree from /proc (Linux).
package procfs

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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

// ParsePPID returns the parent pid from the text of /proc/PID/stat. The
// command name (field 2) may hold spaces and parentheses, so fields are
// counted after its last ')'.
func ParsePPID(stat string) (int, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("stat: no command name")
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 2 {
		return 0, fmt.Errorf("stat: too few fields")
	}
	return strconv.Atoi(f[1])
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
