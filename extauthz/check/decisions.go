package check

import (
	"slices"
	"sync"
	"sync/atomic"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/scopegate/scopegate/extauthz/policy"
	"github.com/scopegate/scopegate/extauthz/token"
	"github.com/scopegate/scopegate/internal/contract"
	"github.com/scopegate/scopegate/internal/oauth"
)

// perToken is what the service derives once per verified token and memoises on the
// identity: the plain allow response (see allowResponse), the policy's token document
// (built on the token's first evaluation, so a token whose decision comes from the shared
// cache never pays for it), and (for a revision whose decision depends only on token, route
// and method) its decisions.
type perToken struct {
	// allow is the plain OK response, pre-encoded, from the token's second allowed request
	// on; allows counts the requests that built it before that.
	allow  atomic.Pointer[authv3.CheckResponse]
	allows atomic.Int32

	termOnce sync.Once
	term     *ast.Term

	// logDoc is the token's input document as JSON, for the decision log's lines.
	logOnce sync.Once
	logDoc  []byte

	// ath is the token's hash as DPoP proofs name it, computed on its first DPoP request.
	athOnce sync.Once
	ath     string

	mu sync.RWMutex
	// decisions is a short list, not a map: a token is used on few routes, and a map's
	// buckets would cost more than a kilobyte per token.
	decisions []tokenDecision
}

type tokenDecision struct {
	key decisionKey
	d   *policy.Decision // shared with other tokens when it came from the shared decisions
}

// allowResponse is the token's plain OK response (its identity headers). The first allowed
// request builds it as a message, which gRPC marshals once like any response; the second
// builds and pre-encodes it, and every later one reuses those bytes. A token seen once (an
// opaque token read from the shared store, a one-shot client) so never pays for encoding
// its response twice.
func (pt *perToken) allowResponse(s *Service, id *token.Identity) *authv3.CheckResponse {
	if r := pt.allow.Load(); r != nil {
		return r
	}
	m := s.allow(id, nil, nil)
	if pt.allows.Add(1) == 1 {
		return m
	}
	r := preEncoded(m)
	if !pt.allow.CompareAndSwap(nil, r) {
		return pt.allow.Load() // a concurrent request stored the same bytes first
	}
	return r
}

func (pt *perToken) tokenHash(raw string) string {
	pt.athOnce.Do(func() { pt.ath = oauth.TokenHash(raw) })
	return pt.ath
}

func (pt *perToken) tokenTerm(id *token.Identity) *ast.Term {
	pt.termOnce.Do(func() { pt.term = policy.TokenTerm(id) })
	return pt.term
}

// TokenJSON is input.token as the decision log writes it, encoded on the token's first
// logged line with input (decisionlog.TokenDoc).
func (pt *perToken) TokenJSON(id *token.Identity) []byte {
	pt.logOnce.Do(func() { pt.logDoc = policy.AppendTokenJSON(nil, id) })
	return pt.logDoc
}

// decisionKey is everything a cacheable decision can depend on besides the token.
type decisionKey struct {
	rev                                            *policy.Revision
	route, scopes, mode, acrValues, maxAge, method string
}

// maxDecisionsPerToken bounds the per-token decision cache.
const maxDecisionsPerToken = 32

func (pt *perToken) decision(k decisionKey) (*policy.Decision, bool) {
	pt.mu.RLock()
	defer pt.mu.RUnlock()
	for i := range pt.decisions {
		if pt.decisions[i].key == k {
			return pt.decisions[i].d, true
		}
	}
	return nil, false
}

func (pt *perToken) remember(k decisionKey, d *policy.Decision) {
	pt.mu.Lock()
	defer pt.mu.Unlock()
	if len(pt.decisions) >= maxDecisionsPerToken {
		// Drop decisions of revisions no longer in force first.
		pt.decisions = slices.DeleteFunc(pt.decisions, func(td tokenDecision) bool { return td.key.rev != k.rev })
		if len(pt.decisions) >= maxDecisionsPerToken {
			return
		}
	}
	pt.decisions = append(pt.decisions, tokenDecision{key: k, d: d})
}

// cacheKey returns the decision key when rev's decisions may be reused for this request:
// the policy reads nothing of the request beyond the method, and the route carries no
// extension beyond route, scopes, mode and its step-up requirements.
func cacheKey(rev *policy.Revision, r *contract.RouteExt, method string) (decisionKey, bool) {
	if !rev.Reads.Cacheable || !r.DecisionOnly() {
		return decisionKey{}, false
	}
	return decisionKey{rev: rev, route: r.Name, scopes: r.Scopes, mode: r.Mode, acrValues: r.ACRValues, maxAge: r.MaxAge, method: method}, true
}

// sharedDecisions are one shareable revision's decisions, keyed by everything they can
// depend on: every route extension, and the values of the request and token fields the
// revision reads (policy.Fields.Shareable). A never-seen token whose scopes (say) match an
// earlier token's on the same route gets its decision without an evaluation, and so does a
// request to a path the revision has decided before for a token like it: evaluation is
// most of scopegate's own cost after the signature check.
type sharedDecisions struct {
	rev *policy.Revision
	mu  sync.RWMutex
	m   map[string]*policy.Decision
}

const (
	// maxSharedDecisions bounds the cache. Keys are the distinct (route, scopes, path...)
	// combinations the fleet sees; when a revision reads something with many values (sub,
	// a path with ids in it), a random entry makes room for each new one.
	maxSharedDecisions = 1 << 14
	// maxSharedKey leaves out requests with an outsized key (huge scope lists, extensions).
	maxSharedKey = 4 << 10
)

// sharedFor returns the shared decisions of rev, starting them empty on a new revision (a
// decision never outlives the revision that made it).
func (s *Service) sharedFor(rev *policy.Revision) *sharedDecisions {
	for {
		cur := s.shared.Load()
		if cur != nil && cur.rev == rev {
			return cur
		}
		next := &sharedDecisions{rev: rev, m: make(map[string]*policy.Decision)}
		if s.shared.CompareAndSwap(cur, next) {
			return next
		}
	}
}

func (sd *sharedDecisions) get(key []byte) (*policy.Decision, bool) {
	if len(key) > maxSharedKey {
		return nil, false
	}
	sd.mu.RLock()
	d, ok := sd.m[string(key)]
	sd.mu.RUnlock()
	return d, ok
}

func (sd *sharedDecisions) put(key []byte, d *policy.Decision) {
	if len(key) > maxSharedKey {
		return
	}
	sd.mu.Lock()
	defer sd.mu.Unlock()
	if len(sd.m) >= maxSharedDecisions {
		for k := range sd.m { // map iteration starts at random: a random eviction
			delete(sd.m, k)
			break
		}
	}
	sd.m[string(key)] = d
}
