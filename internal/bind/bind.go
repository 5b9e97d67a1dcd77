// Package bind opens TCP listeners with errors an operator can act on: the address, and the
// setting that chose it, when the port is taken.
package bind

import (
	"errors"
	"fmt"
	"net"
	"syscall"
)

// TCP listens on addr. setting names where addr came from ("listen", "admin",
// "--api-listen"), so that "address already in use" says what to change.
func TCP(addr, setting string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		return ln, nil
	}
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("%s %s: address already in use by another process (an earlier run still going?): stop it, or change %s", setting, addr, setting)
	}
	return nil, fmt.Errorf("%s %s: %w", setting, addr, err)
}
