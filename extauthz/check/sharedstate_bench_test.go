package check_test

import (
	"context"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/scopegate/scopegate/extauthz/check"
	"github.com/scopegate/scopegate/extauthz/dpop"
	"github.com/scopegate/scopegate/extauthz/sharedstate"
	"github.com/scopegate/scopegate/internal/oauth"
	"github.com/scopegate/scopegate/internal/testing/redistest"
	"github.com/scopegate/scopegate/internal/testing/testissuer"
)

// BenchmarkSharedState measures what the shared state store (a real redis-server on
// loopback) adds to a Check, in alternating batches of 100 so every figure sees the same
// machine load, with the store's own round trip (PING) measured in the same loop twice:
// in a loop of its own (ping-ns), and right after each Check of the floor (floor-ns is the
// floor's Check plus that PING). On a loaded machine a round trip made right after a
// CPU-heavy Check (a DPoP proof's signature) costs more than one in a tight loop; rtt-ns
// (floor-ns less the floor's Check) is the round trip as a Check meets it.
//
//   - dpop: a warm DPoP Check (token cached, fresh proof) with the local replay cache
//     (local-ns/check) and with the shared store (shared-ns/check); goal:
//     (shared - local) / ping <= 1.5 (also reported against rtt).
//   - introspected: a warm JWT Check (jwt-ns/check) and a Check of an opaque token whose
//     answer is read from the store, the replica's own cache off (store-ns/check); goal:
//     (store - jwt) / ping <= 1 (also reported against rtt).
//
// go test -run '^$' -bench SharedState -benchtime 20000x ./extauthz/check/
func BenchmarkSharedState(b *testing.B) {
	srv := redistest.Start(b)
	store, err := sharedstate.New(sharedstate.Options{Addresses: []string{srv.Addr()}, AnswerKey: []byte("0123456789abcdef0123456789abcdef"),
		ProbeInterval: 10 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	store.Start(ctx)
	b.Cleanup(store.Close)
	for !store.Up() {
		<-store.Changed()
	}
	ping := func() time.Duration {
		d, err := store.Ping(ctx)
		if err != nil {
			b.Fatal(err)
		}
		return d
	}
	k := testissuer.NewKey("k1", "ES256")

	b.Run("dpop", func(b *testing.B) {
		r := newRig(b, []*testissuer.Key{k}, "token-only", 1000)
		// One client makes every proof here: its key may fill the whole replay cache
		// (by default one key gets a twentieth of it, fewer than a long run's proofs).
		local, err := dpop.New(dpop.Options{ReplayEntriesPerKey: oauth.DefaultReplayEntries})
		if err != nil {
			b.Fatal(err)
		}
		shared, err := dpop.New(dpop.Options{Shared: store})
		if err != nil {
			b.Fatal(err)
		}
		svcLocal := check.New(check.Options{Verifier: r.verifier, DPoP: local, Headers: r.headers})
		svcShared := check.New(check.Options{Verifier: r.verifier, DPoP: shared, Headers: r.headers})
		holder := proofKey(b, "ES256")
		jkt, err := oauth.Thumbprint(holder)
		if err != nil {
			b.Fatal(err)
		}
		c := r.is.Standard("orders-api", "alice", "orders:read", time.Hour)
		c["cnf"] = map[string]any{"jkt": jkt}
		tok := testissuer.Sign(k, c, nil)
		const batch = 100
		rounds := (b.N + batch - 1) / batch
		// A fresh proof per Check, made before the clock runs.
		reqs := make([]*authv3.CheckRequest, 3*rounds*batch+1)
		for i := range reqs {
			p, err := oauth.SignProof(holder, "ES256", oauth.ProofClaims{Method: "GET", URI: "https://api.example.com/orders/42", AccessToken: tok})
			if err != nil {
				b.Fatal(err)
			}
			reqs[i] = request(tok)
			h := reqs[i].Attributes.Request.Http.Headers
			h["authorization"], h["dpop"] = "DPoP "+tok, p
		}
		mustAllow(b, must(svcLocal.Check(ctx, reqs[len(reqs)-1]))) // the token is cached from here on
		var localNs, sharedNs, pingNs, floorNs time.Duration
		n := 0
		b.ResetTimer()
		for round := range rounds {
			base := 3 * round * batch
			start := time.Now()
			for j := range batch {
				mustAllow(b, must(svcLocal.Check(ctx, reqs[base+j])))
			}
			mid := time.Now()
			for j := range batch {
				mustAllow(b, must(svcShared.Check(ctx, reqs[base+batch+j])))
			}
			end := time.Now()
			for range batch {
				pingNs += ping()
			}
			floor := time.Now()
			for j := range batch {
				mustAllow(b, must(svcLocal.Check(ctx, reqs[base+2*batch+j])))
				ping()
			}
			floorNs += time.Since(floor)
			localNs += mid.Sub(start)
			sharedNs += end.Sub(mid)
			n += batch
		}
		report(b, n, map[string]time.Duration{"local-ns/check": localNs, "shared-ns/check": sharedNs, "ping-ns": pingNs,
			"floor-ns/check": floorNs, "rtt-ns": floorNs - localNs})
		b.ReportMetric(float64(sharedNs-localNs)/float64(pingNs), "(shared-local)/ping")
		b.ReportMetric(float64(sharedNs-localNs)/float64(floorNs-localNs), "(shared-local)/rtt")
	})

	b.Run("introspected", func(b *testing.B) {
		idp := introspectionServer(b)
		jwtRig := newRig(b, []*testissuer.Key{k}, "token-only", 100000)
		// No local token cache: every Check of an opaque token reads the store.
		storeRig := newRigShared(b, []*testissuer.Key{k}, "token-only", 0, idp.URL, store.Answers())
		const pool = 1000
		jwts, opaques := make([]*authv3.CheckRequest, pool), make([]*authv3.CheckRequest, pool)
		for i := range jwts {
			jwts[i], opaques[i] = request(jwtRig.token(k, i, "orders:read orders:write")), request(opaqueToken(i))
			mustAllow(b, must(jwtRig.svc.Check(ctx, jwts[i])))
			mustAllow(b, must(storeRig.svc.Check(ctx, opaques[i]))) // asks the IdP once, shares the answer
		}
		const batch = 100
		var jwtNs, storeNs, pingNs, floorNs time.Duration
		n := 0
		b.ResetTimer()
		for n < b.N {
			start := time.Now()
			for j := range batch {
				mustAllow(b, must(jwtRig.svc.Check(ctx, jwts[(n+j)%pool])))
			}
			mid := time.Now()
			for j := range batch {
				mustAllow(b, must(storeRig.svc.Check(ctx, opaques[(n+j)%pool])))
			}
			end := time.Now()
			for range batch {
				pingNs += ping()
			}
			floor := time.Now()
			for j := range batch {
				mustAllow(b, must(jwtRig.svc.Check(ctx, jwts[(n+j)%pool])))
				ping()
			}
			floorNs += time.Since(floor)
			jwtNs += mid.Sub(start)
			storeNs += end.Sub(mid)
			n += batch
		}
		report(b, n, map[string]time.Duration{"jwt-ns/check": jwtNs, "store-ns/check": storeNs, "ping-ns": pingNs,
			"floor-ns/check": floorNs, "rtt-ns": floorNs - jwtNs})
		b.ReportMetric(float64(storeNs-jwtNs)/float64(pingNs), "(store-jwt)/ping")
		b.ReportMetric(float64(storeNs-jwtNs)/float64(floorNs-jwtNs), "(store-jwt)/rtt")
	})
}

func report(b *testing.B, n int, totals map[string]time.Duration) {
	for unit, d := range totals {
		b.ReportMetric(float64(d.Nanoseconds())/float64(n), unit)
	}
}
