package bind

import (
	"strings"
	"testing"
)

func TestTCPNamesAddressAndSetting(t *testing.T) {
	first, err := TCP("127.0.0.1:0", "listen")
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	addr := first.Addr().String()
	_, err = TCP(addr, "admin")
	if err == nil {
		t.Fatalf("a second listener on %s was allowed", addr)
	}
	for _, want := range []string{"admin " + addr, "already in use", "change admin"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if _, err := TCP("127.0.0.1:notaport", "listen"); err == nil || !strings.HasPrefix(err.Error(), "listen 127.0.0.1:notaport: ") {
		t.Errorf("bad address: %v", err)
	}
}
