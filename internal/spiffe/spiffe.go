// Package spiffe spells the SPIFFE IDs of scopegate's internal hops. The fleet identity is
// the one both sides must agree on: scopegate xds serves an Envoy only the fleet its client
// certificate names, refuses to push a certificate that names a fleet to other Envoys, and
// the issuers (scopegate demo-cert, the tests) write it into Envoy's certificate.
package spiffe

import (
	"net/url"
	"strings"
)

// fleetPath is the path prefix of every fleet identity.
const fleetPath = "/fleet/"

// ID is the SPIFFE ID spiffe://trustDomain/path.
func ID(trustDomain, path string) string {
	return "spiffe://" + trustDomain + "/" + strings.TrimPrefix(path, "/")
}

// FleetID is the identity an Envoy of fleet presents to scopegate xds: the one URI SAN of its
// client certificate must be spiffe://<trust domain>/fleet/<fleet>, fleet being its
// node.cluster.
func FleetID(trustDomain, fleet string) string {
	return ID(trustDomain, fleetPath+fleet)
}

// IsFleetID reports whether u is a fleet identity of any trust domain
// (spiffe://<any>/fleet/...): a certificate carrying one can connect to scopegate xds as
// that fleet.
func IsFleetID(u *url.URL) bool {
	return strings.EqualFold(u.Scheme, "spiffe") && strings.HasPrefix(u.Path, fleetPath)
}
