package load

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

var clkTck = sync.OnceValue(func() int64 {
	// AT_CLKTCK (17) from the auxiliary vector: sysconf(_SC_CLK_TCK) without cgo.
	raw, err := os.ReadFile("/proc/self/auxv")
	if err == nil {
		for i := 0; i+16 <= len(raw); i += 16 {
			k, v := binary.NativeEndian.Uint64(raw[i:]), binary.NativeEndian.Uint64(raw[i+8:])
			if k == 17 && v > 0 {
				return int64(v)
			}
			if k == 0 {
				break
			}
		}
	}
	return 100
})

// ProcCPU is a process's user+system CPU time (all its threads, living and exited) from
// /proc/<pid>/stat.
func ProcCPU(pid int) (time.Duration, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces and parentheses: fields are counted after the last ')'.
	i := bytes.LastIndexByte(raw, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(string(raw[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	// f[0] is field 3 (state): utime is field 14, stime field 15.
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime/stime", pid)
	}
	return time.Duration((ut + st) * int64(time.Second) / clkTck()), nil
}

// machineCPU is the first line of /proc/stat: the whole machine's CPU time in clock ticks
// (every process, the kernel, and time the hypervisor gave to others: steal).
type machineCPU struct {
	total, idle, steal int64
}

func readMachineCPU() (machineCPU, error) {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return machineCPU{}, err
	}
	line, _, _ := strings.Cut(string(raw), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return machineCPU{}, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var m machineCPU
	// user nice system idle iowait irq softirq steal (guest time is inside user).
	for i, s := range f[1:9] {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return machineCPU{}, fmt.Errorf("/proc/stat: field %d: %w", i+1, err)
		}
		m.total += v
		switch i {
		case 3, 4:
			m.idle += v
		case 7:
			m.steal += v
		}
	}
	return m, nil
}

// since is the fraction of the machine's CPU time that was busy (anything but idle and
// iowait) and stolen by the hypervisor between m0 and m.
func (m machineCPU) since(m0 machineCPU) (busy, steal float64) {
	d := m.total - m0.total
	if d <= 0 {
		return 0, 0
	}
	return float64(d-(m.idle-m0.idle)) / float64(d), float64(m.steal-m0.steal) / float64(d)
}
