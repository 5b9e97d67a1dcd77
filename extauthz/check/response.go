package check

import (
	"sync"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"

	"github.com/scopegate/scopegate/extauthz/denial"
)

var okStatus = &rpcstatus.Status{Code: int32(codes.OK)}

// denialCache holds a service's answers to refusals that depend only on fixed strings and
// the route's own values (bearer and token errors, bad proofs, step-up), so a flood of bad
// tokens costs no response building. Proto messages are only read once built, so sharing
// them across Checks is safe. The key set is bounded by our own reasons and descriptions
// and the config's routes.
type denialCache struct {
	m        sync.Map // key string → *authv3.CheckResponse
	dpopAlgs string   // the DPoP proof algorithms, "" when DPoP is not accepted
}

func (c *denialCache) get(key string, d *denial.Denial) *authv3.CheckResponse {
	if r, ok := c.m.Load(key); ok {
		return r.(*authv3.CheckResponse)
	}
	r := d.Response(c.dpopAlgs)
	c.m.Store(key, r)
	return r
}
