package spiffe

import (
	"net/url"
	"testing"
)

func TestFleetID(t *testing.T) {
	if got, want := FleetID("example.org", "edge"), "spiffe://example.org/fleet/edge"; got != want {
		t.Errorf("FleetID = %q, want %q", got, want)
	}
	if got, want := ID("example.org", "/authz-client"), "spiffe://example.org/authz-client"; got != want {
		t.Errorf("ID = %q, want %q", got, want)
	}
}

// TestIsFleetID: every trust domain's fleet identity is one (the certificate pushed to every
// fleet must carry none), other SPIFFE IDs and other schemes are not.
func TestIsFleetID(t *testing.T) {
	for _, tt := range []struct {
		uri  string
		want bool
	}{
		{FleetID("example.org", "edge"), true},
		{"spiffe://evil.org/fleet/internal", true},
		{"SPIFFE://example.org/fleet/edge", true},
		{ID("example.org", "authz-client"), false},
		{"spiffe://example.org/fleetx/edge", false},
		{"https://example.org/fleet/edge", false},
	} {
		u, err := url.Parse(tt.uri)
		if err != nil {
			t.Fatal(err)
		}
		if got := IsFleetID(u); got != tt.want {
			t.Errorf("IsFleetID(%s) = %v, want %v", tt.uri, got, tt.want)
		}
	}
}
