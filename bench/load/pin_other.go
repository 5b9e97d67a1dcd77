//go:build !linux

package load

import "errors"

func pinProcess(pid, cpu int) error {
	return errors.New("pinning to a CPU is implemented for Linux only")
}

func onCPU(pid, cpu int) (bool, error) {
	return false, errors.New("pinning to a CPU is implemented for Linux only")
}

func pinHarness(cpu int) (func(), error) {
	return nil, errors.New("pinning to a CPU is implemented for Linux only")
}
