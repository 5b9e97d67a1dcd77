package sharedstate_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/scopegate/scopegate/extauthz/sharedstate"
	"github.com/scopegate/scopegate/internal/testing/redistest"
)

// answerKey is a test key for sealing answers (32 bytes).
var answerKey = []byte("0123456789abcdef0123456789abcdef")

// open starts a Store on addrs and waits until it is up.
func open(t *testing.T, o sharedstate.Options) (*sharedstate.Store, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	o.Registry = reg
	if o.ProbeInterval == 0 {
		o.ProbeInterval = 20 * time.Millisecond
	}
	s, err := sharedstate.New(o)
	if err != nil {
		t.Fatal(err)
	}
	s.Start(context.Background())
	t.Cleanup(s.Close)
	waitState(t, s, true)
	return s, reg
}

// waitState waits (on the store's change signal) until it is up (or down).
func waitState(t *testing.T, s *sharedstate.Store, up bool) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		ch := s.Changed()
		if s.Up() == up {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("store up = %v after 20s, want %v (%+v)", s.Up(), up, s.Status())
		}
	}
}

// jkt makes a valid-looking thumbprint for name.
func jkt(name string) string {
	sum := sha256.Sum256([]byte(name))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func TestFirstUse(t *testing.T) {
	srv := redistest.Start(t)
	s, reg := open(t, sharedstate.Options{Addresses: []string{srv.Addr()}, KeyPrefix: "t1:", ClockSkew: time.Millisecond})
	ctx := context.Background()
	k := jkt("alice-key")
	const jti = "proof-jti-Zm9vYmFy-secret-looking"
	until := 300 * time.Millisecond
	if first, err := s.FirstUse(ctx, k, jti, until); err != nil || !first {
		t.Fatalf("first use: %v, %v; want true", first, err)
	}
	for range 3 {
		if first, err := s.FirstUse(ctx, k, jti, until); err != nil || first {
			t.Fatalf("second use: %v, %v; want false (replayed)", first, err)
		}
	}
	// Another key with the same jti is its own proof: no collision between keys.
	if first, err := s.FirstUse(ctx, jkt("bob-key"), jti, until); err != nil || !first {
		t.Fatalf("other key, same jti: %v, %v; want true", first, err)
	}
	keys := srv.Keys()
	if len(keys) != 2 {
		t.Fatalf("keys %v, want 2", keys)
	}
	for _, key := range keys {
		if !strings.HasPrefix(key, "t1:dpop:{") || strings.Contains(key, jti) || strings.Contains(key, "Zm9v") {
			t.Errorf("key %q: want t1:dpop:{jkt}:hash, never the jti", key)
		}
		if v, _ := srv.Do("GET", key); v != "1" {
			t.Errorf("value of %q is %q, want 1", key, v)
		}
		pttl, _ := srv.Do("PTTL", key)
		var ms int
		fmt.Sscan(pttl, &ms)
		if ms <= 0 || ms > 301 {
			t.Errorf("PTTL %s = %d ms, want 1..301 (until + skew)", key, ms)
		}
	}
	if !strings.Contains(keys[0]+keys[1], "{"+k+"}") {
		t.Errorf("keys %v do not carry the hash tag {%s}", keys, k)
	}
	// The entries expire with the window: the space is reclaimed.
	deadline := time.Now().Add(20 * time.Second)
	for {
		n, err := srv.Do("DBSIZE")
		if err != nil {
			t.Fatal(err)
		}
		if n == "0" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("DBSIZE %s 20s after the window: entries not reclaimed", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := metricValue(t, reg, "scopegate_shared_state_dpop_proofs_total", "result", "replayed"); got != 3 {
		t.Errorf("replayed counter %v, want 3", got)
	}
	if _, err := s.FirstUse(ctx, "not-a-thumbprint{x}", jti, until); err == nil {
		t.Error("a malformed thumbprint was accepted into a key")
	}
}

// Two goroutines racing with one proof: exactly one first use, on one store.
func TestFirstUseRace(t *testing.T) {
	srv := redistest.Start(t)
	s, _ := open(t, sharedstate.Options{Addresses: []string{srv.Addr()}})
	var firsts atomic.Int32
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			if first, err := s.FirstUse(context.Background(), jkt("k"), "same", time.Minute); err != nil {
				t.Error(err)
			} else if first {
				firsts.Add(1)
			}
		})
	}
	wg.Wait()
	if firsts.Load() != 1 {
		t.Fatalf("%d first uses of one proof, want 1", firsts.Load())
	}
}

func TestUnixSocket(t *testing.T) {
	srv := redistest.StartUnix(t)
	s, _ := open(t, sharedstate.Options{Addresses: []string{srv.Addr()}})
	if first, err := s.FirstUse(context.Background(), jkt("k"), "j", time.Minute); err != nil || !first {
		t.Fatalf("first use over a Unix socket: %v, %v", first, err)
	}
}

// A Redis Cluster of three masters: proofs of many keys spread over the shards, each key's
// proofs on one shard (hash tag), and a replay is refused whichever node the client asks.
func TestCluster(t *testing.T) {
	c := redistest.StartCluster(t)
	s, _ := open(t, sharedstate.Options{Addresses: c.Addrs()})
	ctx := context.Background()
	until := time.Minute
	for i := range 60 {
		k := jkt(fmt.Sprint("key-", i))
		for j := range 2 {
			if first, err := s.FirstUse(ctx, k, fmt.Sprint("jti-", j), until); err != nil || !first {
				t.Fatalf("key %d jti %d: %v, %v", i, j, first, err)
			}
		}
		if first, err := s.FirstUse(ctx, k, "jti-1", until); err != nil || first {
			t.Fatalf("key %d replay: %v, %v; want refused", i, first, err)
		}
	}
	tagsOn := map[string]int{}
	for node, keys := range c.Keys() {
		if len(keys) == 0 {
			t.Errorf("node %d holds no keys: not spread over the shards", node)
		}
		for _, key := range keys {
			tag := key[strings.IndexByte(key, '{'):strings.IndexByte(key, '}')]
			if prev, ok := tagsOn[tag]; ok && prev != node {
				t.Errorf("key tag %s on nodes %d and %d: one key's proofs must stay on one shard", tag, prev, node)
			}
			tagsOn[tag] = node
		}
	}
	if len(tagsOn) != 60 {
		t.Errorf("%d key tags, want 60", len(tagsOn))
	}
}

func TestAnswers(t *testing.T) {
	srv := redistest.Start(t)
	s, _ := open(t, sharedstate.Options{Addresses: []string{srv.Addr()}, AnswerKey: answerKey})
	a := s.Answers()
	ctx := context.Background()
	const token = "opaque-TOKEN-s3cr3t"
	body := []byte(`{"active":true,"sub":"alice@example.com","scope":"orders:read","exp":4102444800}`)
	if _, _, _, ok, err := a.Answer(ctx, "idp", token); ok || err != nil {
		t.Fatalf("answer before any: %v %v", ok, err)
	}
	if won, err := a.Claim(ctx, "idp", token, time.Second); !won || err != nil {
		t.Fatalf("first claim: %v %v; want won", won, err)
	}
	if won, err := a.Claim(ctx, "idp", token, time.Second); won || err != nil {
		t.Fatalf("second claim: %v %v; want taken", won, err)
	}
	at := time.Now().Add(-3 * time.Second).Truncate(time.Millisecond)
	if err := a.Share(ctx, "idp", token, body, false, at, time.Minute); err != nil {
		t.Fatal(err)
	}
	got, jwt, gotAt, ok, err := a.Answer(ctx, "idp", token)
	if !ok || err != nil || jwt || !bytes.Equal(got, body) || !gotAt.Equal(at) {
		t.Fatalf("answer: %q jwt=%v at=%v ok=%v err=%v", got, jwt, gotAt, ok, err)
	}
	if _, _, _, ok, _ := a.Answer(ctx, "other-issuer", token); ok {
		t.Error("another issuer's lookup found this issuer's answer")
	}
	// Share dropped the claim: the next replica to miss may claim again.
	if won, _ := a.Claim(ctx, "idp", "another-token", time.Second); !won {
		t.Error("claim of another token refused")
	}
	keys := srv.Keys()
	var answerKeyName string
	for _, k := range keys {
		if strings.Contains(k, token) || strings.Contains(k, "s3cr3t") {
			t.Errorf("key %q holds the token", k)
		}
		v, _ := srv.Do("GET", k)
		for _, secret := range []string{token, "alice", "orders:read", "active"} {
			if strings.Contains(v, secret) {
				t.Errorf("value of %q holds %q in the clear", k, secret)
			}
		}
		if strings.HasSuffix(k, ":a") {
			answerKeyName = k
		}
	}
	// An answer copied under another token's key does not open there: a miss, not an answer.
	v, _ := srv.Do("GET", answerKeyName)
	if err := a.Share(ctx, "idp", "victim", []byte(`{"active":false}`), false, time.Now(), time.Minute); err != nil {
		t.Fatal(err)
	}
	for _, k := range srv.Keys() {
		if strings.HasSuffix(k, ":a") && k != answerKeyName {
			if _, err := srv.Do("SET", k, v); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, _, _, ok, err := a.Answer(ctx, "idp", "victim"); ok || err != nil {
		t.Fatalf("a moved answer opened: ok=%v err=%v", ok, err)
	}
	// A store opened with another key reads nothing of this one's.
	s2, _ := open(t, sharedstate.Options{Addresses: []string{srv.Addr()}, AnswerKey: []byte(strings.Repeat("x", 32))})
	if _, _, _, ok, _ := s2.Answers().Answer(ctx, "idp", token); ok {
		t.Error("an answer opened with another key")
	}
}

// Killed: calls fail at once (after a few, without touching the network), the store is
// reported down; restarted: it comes back by itself.
func TestDownAndBack(t *testing.T) {
	srv := redistest.Start(t)
	s, reg := open(t, sharedstate.Options{Addresses: []string{srv.Addr()}, LocalFallback: true})
	ctx := context.Background()
	if _, err := s.FirstUse(ctx, jkt("k"), "before", time.Minute); err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	for i := range 10 {
		cctx, cancel := context.WithTimeout(ctx, 250*time.Millisecond)
		start := time.Now()
		_, err := s.FirstUse(cctx, jkt("k"), fmt.Sprint("during-", i), time.Minute)
		cancel()
		if !errors.Is(err, sharedstate.ErrUnavailable) {
			t.Fatalf("call %d with the store killed: %v, want ErrUnavailable", i, err)
		}
		if took := time.Since(start); took > 200*time.Millisecond {
			t.Fatalf("call %d took %s with the store killed", i, took)
		}
	}
	waitState(t, s, false)
	st := s.Status()
	if st.State != "down" || st.DPoPReplay != "local" || st.OnUnavailable != "local" || st.LastError == "" {
		t.Errorf("status while down: %+v", st)
	}
	if got := metricValue(t, reg, "scopegate_shared_state_fallback_total", "use", "dpop_replay"); got < 10 {
		t.Errorf("fallback counter %v, want >= 10", got)
	}
	if got := metricValue(t, reg, "scopegate_shared_state_up", "", ""); got != 0 {
		t.Errorf("up gauge %v while down", got)
	}
	srv.Restart()
	waitState(t, s, true)
	if first, err := s.FirstUse(ctx, jkt("k"), "after", time.Minute); err != nil || !first {
		t.Fatalf("after restart: %v %v", first, err)
	}
	if first, err := s.FirstUse(ctx, jkt("k"), "after", time.Minute); err != nil || first {
		t.Fatalf("replay after restart: %v %v; want refused", first, err)
	}
}

// A store down at start does not keep New or Start from returning; it connects when it can.
func TestDownAtStart(t *testing.T) {
	srv := redistest.Start(t)
	srv.Kill()
	s, err := sharedstate.New(sharedstate.Options{Addresses: []string{srv.Addr()}, ProbeInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	s.Start(context.Background())
	t.Cleanup(s.Close)
	if _, err := s.FirstUse(context.Background(), jkt("k"), "j", time.Minute); !errors.Is(err, sharedstate.ErrUnavailable) {
		t.Fatalf("before connecting: %v", err)
	}
	if st := s.Status(); st.DPoPReplay != "refused" || st.Introspection != "off" {
		t.Errorf("status: %+v", st)
	}
	srv.Restart()
	waitState(t, s, true)
}

func TestPasswordAndACL(t *testing.T) {
	srv := redistest.Start(t, "--requirepass", "hunter2-very-secret")
	if _, err := srv.Do("AUTH", "hunter2-very-secret"); err != nil {
		t.Fatal(err)
	}
	s, _ := open(t, sharedstate.Options{Addresses: []string{srv.Addr()}, Password: func() (string, error) { return "hunter2-very-secret", nil }, DB: 3})
	if first, err := s.FirstUse(context.Background(), jkt("k"), "j", time.Minute); err != nil || !first {
		t.Fatalf("with a password: %v %v", first, err)
	}
	bad, err := sharedstate.New(sharedstate.Options{Addresses: []string{srv.Addr()}, Password: func() (string, error) { return "wrong", nil }, ProbeInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	bad.Start(context.Background())
	t.Cleanup(bad.Close)
	ch := bad.Changed()
	<-ch
	if st := bad.Status(); st.State != "down" || strings.Contains(st.LastError, "wrong") {
		t.Errorf("wrong password: %+v (the error must not echo the password)", st)
	}
}

func TestNewRefuses(t *testing.T) {
	for name, o := range map[string]sharedstate.Options{
		"no address":       {},
		"not host:port":    {Addresses: []string{"valkey"}},
		"cluster db":       {Addresses: []string{"a:1", "b:1"}, DB: 1},
		"unix plus tcp":    {Addresses: []string{"unix:///tmp/s", "a:1"}},
		"relative unix":    {Addresses: []string{"unix://tmp/s"}},
		"short answer key": {Addresses: []string{"a:1"}, AnswerKey: []byte("short")},
	} {
		if _, err := sharedstate.New(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// metricValue reads one series from reg (label "" for an unlabelled one).
func metricValue(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := label == ""
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					match = true
				}
			}
			if match {
				return m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("no series %s{%s=%q}", name, label, value)
	return 0
}
