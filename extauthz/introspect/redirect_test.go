package introspect

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// An introspection endpoint that redirects is not followed: a 307/308 would POST the token
// and the client secret (or the private_key_jwt assertion) again, to wherever Location points.
// The call fails (503 for the Check); the other host sees nothing. Discovery, which carries
// no credential, is another client and unaffected.
func TestIntrospectionFollowsNoRedirect(t *testing.T) {
	var elsewhere atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere.Add(1)
		_, _ = w.Write([]byte(`{"active":true,"exp":4000000000}`))
	}))
	defer other.Close()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for _, status := range []int{http.StatusTemporaryRedirect, http.StatusPermanentRedirect, http.StatusFound} {
		for name, o := range map[string]Options{
			"client_secret_basic": {ClientID: "orders-api", ClientSecret: "s3cret"},
			"private_key_jwt":     {ClientID: "orders-api", ClientKey: key},
		} {
			t.Run(http.StatusText(status)+"/"+name, func(t *testing.T) {
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					http.Redirect(w, r, other.URL+"/introspect", status)
				}))
				defer srv.Close()
				o.Name, o.Endpoint = "corp", srv.URL
				c, err := New(o)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := c.Introspect(context.Background(), "the-token"); !errors.Is(err, ErrUnavailable) {
					t.Fatalf("redirected endpoint: %v; want ErrUnavailable", err)
				}
				if n := elsewhere.Load(); n != 0 {
					t.Fatalf("the redirect's target got %d requests (the token and the client credential)", n)
				}
			})
		}
	}
}
