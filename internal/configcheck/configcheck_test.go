package configcheck

import (
	"path/filepath"
	"testing"
)

func TestProblems(t *testing.T) {
	var p Problems
	if p.Err() != nil {
		t.Fatal("no problem recorded, yet an error")
	}
	p.Add("issuers[0].leeway", "%s is out of range", "6m")
	p.Addf("fleet %q: name: required", "edge")
	p.Join(nil)
	p.Join(errTest("tls.cert_file: required"))
	want := "issuers[0].leeway: 6m is out of range\nfleet \"edge\": name: required\ntls.cert_file: required"
	if err := p.Err(); err == nil || err.Error() != want {
		t.Fatalf("Err() = %v, want\n%s", err, want)
	}
}

type errTest string

func (e errTest) Error() string { return string(e) }

func TestDirResolve(t *testing.T) {
	d := DirOf(filepath.Join("/etc", "scopegate", "authz.yaml"))
	rel, abs, empty := "keys/jwks.json", "/var/keys.json", ""
	d.Resolve(&rel, &abs, &empty)
	if rel != "/etc/scopegate/keys/jwks.json" || abs != "/var/keys.json" || empty != "" {
		t.Fatalf("resolved %q %q %q", rel, abs, empty)
	}
	// A config in the working directory, and one parsed from bytes (no folder).
	here := "policies"
	DirOf("authz.yaml").Resolve(&here)
	var none Dir
	kept := "policies"
	none.Resolve(&kept)
	if here != "policies" || kept != "policies" {
		t.Fatalf("resolved %q %q, want policies both", here, kept)
	}
	up := "../policies"
	DirOf("compose/authz.local.yaml").Resolve(&up)
	if up != "policies" {
		t.Fatalf("../policies from compose/: %q, want policies", up)
	}
}
