// Package hostinfo describes the machine a benchmark ran on, for its report.
package hostinfo

import (
	"os"
	"runtime"
	"strings"
)

// Machine is where a run happened, as a report records it. OS, Kernel and Note are left out
// of the JSON when a report does not record them.
type Machine struct {
	NProc         int    `json:"nproc"`
	CPUModel      string `json:"cpu_model"`
	GoVersion     string `json:"go_version"`
	OS            string `json:"os,omitempty"`
	Kernel        string `json:"kernel,omitempty"`
	LoadAvgBefore string `json:"loadavg_before"`
	LoadAvgAfter  string `json:"loadavg_after"`
	Note          string `json:"note,omitempty"`
}

// Here is this machine as a run starts: its cores, CPU model, Go version and load average.
func Here() Machine {
	return Machine{NProc: runtime.NumCPU(), CPUModel: CPUModel(), GoVersion: runtime.Version(), LoadAvgBefore: LoadAvg()}
}

// LoadAvg is /proc/loadavg's first three fields.
func LoadAvg() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(raw))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// CPUModel is the first CPU's model name from /proc/cpuinfo.
func CPUModel() string {
	raw, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	for line := range strings.SplitSeq(string(raw), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
