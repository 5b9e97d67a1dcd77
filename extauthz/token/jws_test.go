package token

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/valyala/fastjson"

	"github.com/scopegate/scopegate/extauthz/config"
	"github.com/scopegate/scopegate/internal/testing/testissuer"

	"github.com/scopegate/scopegate/internal/contract"
)

// referenceParser is how scopegate verified tokens before it split them itself: jwt.Parser
// with the same options, and the header rules applied to jwt's header map.
func referenceParser(cfg config.Issuer, key *testissuer.Key) func(raw string) (jwt.MapClaims, error) {
	p := jwt.NewParser(
		jwt.WithValidMethods(cfg.Algorithms),
		jwt.WithIssuer(cfg.Issuer),
		jwt.WithAudience(cfg.Audiences...),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithStrictDecoding(),
	)
	return func(raw string) (jwt.MapClaims, error) {
		m := jwt.MapClaims{}
		_, err := p.ParseWithClaims(raw, m, func(t *jwt.Token) (any, error) {
			if _, ok := t.Header["crit"]; ok {
				return nil, errors.New("crit")
			}
			if cfg.RequireTyp != "" {
				typ, _ := t.Header["typ"].(string)
				if normTyp(typ) != normTyp(cfg.RequireTyp) {
					return nil, errors.New("typ")
				}
			}
			if kid, ok := t.Header["kid"]; ok && kid != key.KID {
				return nil, errors.New("kid")
			}
			return key.Private.Public(), nil
		})
		return m, err
	}
}

// edFixture is a verifier of one EdDSA key (cheap to sign: fuzzing signs every input). An
// unknown kid may refresh the keys once an hour, so fuzzing does not hammer the issuer.
func edFixture(t testing.TB) (*fixture, *testissuer.Key) {
	k := testissuer.NewKey("ed-1", "EdDSA")
	is := testissuer.New(k)
	t.Cleanup(is.Close)
	f := newFixture(t, is, func(c *config.Issuer) {
		c.RequireTyp, c.UnknownKIDInterval = "at+jwt", time.Hour
	})
	return f, k
}

// signRaw signs header and payload exactly as given (testissuer.Sign would re-encode them).
func signRaw(k *testissuer.Key, header, payload []byte) string {
	enc := base64.RawURLEncoding
	signed := enc.EncodeToString(header) + "." + enc.EncodeToString(payload)
	return signed + "." + enc.EncodeToString(ed25519.Sign(k.Private.(ed25519.PrivateKey), []byte(signed)))
}

// hasDuplicateName reports a JSON object naming a member twice at the top level, which
// scopegate refuses and encoding/json resolves by taking the last.
func hasDuplicateName(b []byte) bool {
	var p fastjson.Parser
	v, err := p.ParseBytes(b)
	if err != nil {
		return false
	}
	obj, err := v.Object()
	return err == nil && duplicateKey(obj) != ""
}

func compareWithJWTParser(t *testing.T, f *fixture, ref func(string) (jwt.MapClaims, error), k *testissuer.Key, header, payload []byte) {
	t.Helper()
	raw := signRaw(k, header, payload)
	id, err := f.v.Verify(context.Background(), raw)
	m, refErr := ref(raw)
	if hasDuplicateName(header) || hasDuplicateName(payload) {
		if err == nil {
			t.Fatalf("header %s payload %s: a duplicate name was accepted", header, payload)
		}
		return
	}
	if refErr == nil {
		// jwt.Parser does not read scope claims; scopegate refuses one of the wrong type.
		if _, bad, _, _ := reference(m); bad != "" {
			if reasonOf(err) != contract.ReasonMalformed {
				t.Fatalf("header %s payload %s: scope claim %q of the wrong type: %v, want malformed", header, payload, bad, err)
			}
			return
		}
	}
	if (err == nil) != (refErr == nil) {
		t.Fatalf("header %s payload %s: scopegate %v, jwt.Parser %v", header, payload, err, refErr)
	}
	if err != nil {
		return
	}
	sub, _ := m["sub"].(string)
	scopes, _, clientID, jti := reference(m)
	if id.Subject != sub || id.ClientID != clientID || id.JTI != jti || !reflect.DeepEqual(id.Scopes, scopes) {
		t.Fatalf("header %s payload %s: identity %+v, jwt.Parser read sub %q scopes %q client %q jti %q", header, payload, id, sub, scopes, clientID, jti)
	}
}

// jwsCases are header/payload pairs on both sides of every rule the split-and-decode step
// enforces; %EXP% becomes a time an hour ahead and %ISS% the issuer.
var jwsCases = [][2]string{
	{`{"alg":"EdDSA","typ":"at+jwt","kid":"ed-1"}`, `{"iss":"%ISS%","aud":"orders-api","exp":%EXP%,"sub":"alice","scope":"a b"}`},
	{`{"alg":"EdDSA","typ":"at+jwt"}`, `{"iss":"%ISS%","aud":["x","orders-api"],"exp":%EXP%,"scp":["a"],"azp":"c"}`},
	{`{"typ":"at+jwt","alg":"EdDSA","extra":{"n":[1,2]}}`, `{"iss":"%ISS%","aud":"orders-api","exp":%EXP%}`},
	{`{"alg":"EdDSA","typ":"application/AT+JWT"}`, `{"iss":"%ISS%","aud":"orders-api","exp":%EXP%}`},
	{` {"alg" : "EdDSA", "typ":"at+jwt"} `, ` {"iss":"%ISS%","aud":"orders-api","exp":%EXP%} `},
	{`{"alg":"EdDSA","typ":"at+jwt","kid":"other"}`, `{"iss":"%ISS%","aud":"orders-api","exp":%EXP%}`},
	{`{"alg":"EdDSA","typ":"at+jwt","kid":7}`, `{"iss":"%ISS%","aud":"orders-api","exp":%EXP%}`},
	{`{"alg":"EdDSA","typ":"at+jwt","crit":[]}`, `{"iss":"%ISS%","aud":"orders-api","exp":%EXP%}`},
	{`{"alg":"EdDSA","typ":"JWT"}`, `{"iss":"%ISS%","aud":"orders-api","exp":%EXP%}`},
	{`{"alg":"EdDSA","typ":7}`, `{"iss":"%ISS%","aud":"orders-api","exp":%EXP%}`},
	{`{"alg":"HS256","typ":"at+jwt"}`, `{"iss":"%ISS%","aud":"orders-api","exp":%EXP%}`},
	{`{"alg":["EdDSA"],"typ":"at+jwt"}`, `{"iss":"%ISS%","aud":"orders-api","exp":%EXP%}`},
	{`{"typ":"at+jwt"}`, `{"iss":"%ISS%","aud":"orders-api","exp":%EXP%}`},
	{`{"alg":"EdDSA","typ":"at+jwt","alg":"EdDSA"}`, `{"iss":"%ISS%","aud":"orders-api","exp":%EXP%}`},
	{`null`, `{"iss":"%ISS%","aud":"orders-api","exp":%EXP%}`},
	{`["alg","EdDSA"]`, `{"iss":"%ISS%","aud":"orders-api","exp":%EXP%}`},
	{`{"alg":"EdDSA","typ":"at+jwt"`, `{"iss":"%ISS%","aud":"orders-api","exp":%EXP%}`},
	{`{"alg":"EdDSA","typ":"at+jwt","x":NaN}`, `{"iss":"%ISS%","aud":"orders-api","exp":%EXP%}`},
	{`{"alg":"EdDSA","typ":"at+jwt"}`, `{"iss":"%ISS%","aud":"orders-api","exp":%EXP%,"n":Infinity}`},
	{`{"alg":"EdDSA","typ":"at+jwt"}`, `{"iss":"%ISS%","aud":"orders-api","exp":%EXP%,"s":"tab	inside"}`},
	{`{"alg":"EdDSA","typ":"at+jwt"}`, `{"iss":"%ISS%","aud":"orders-api","exp":%EXP%,"n":01}`},
	{`{"alg":"EdDSA","typ":"at+jwt"}`, `{"iss":"%ISS%","aud":"orders-api","exp":%EXP%}x`},
	{`{"alg":"EdDSA","typ":"at+jwt"}`, `{"iss":"%ISS%","aud":"orders-api","exp":"%EXP%"}`},
	{`{"alg":"EdDSA","typ":"at+jwt"}`, `{"iss":"%ISS%","aud":"orders-api"}`},
	{`{"alg":"EdDSA","typ":"at+jwt"}`, `{"iss":"%ISS%","aud":"billing","exp":%EXP%}`},
	{`{"alg":"EdDSA","typ":"at+jwt"}`, `{"iss":"%ISS%/","aud":"orders-api","exp":%EXP%}`},
	{`{"alg":"EdDSA","typ":"at+jwt"}`, `{"iss":"%ISS%","aud":"orders-api","exp":%EXP%,"iat":4000000000}`},
	{`{"alg":"EdDSA","typ":"at+jwt"}`, `{"iss":"%ISS%","aud":"orders-api","exp":%EXP%,"scope":"a","scope":"admin"}`},
	{`{"alg":"EdDSA","typ":"at+jwt"}`, `{"\u0069ss":"%ISS%","aud":"orders-api","exp":%EXP%}`},
	{`{"alg":"EdDSA","typ":"at+jwt"}`, `[]`},
}

func expandCase(s, iss string) []byte {
	exp := strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10)
	return []byte(strings.NewReplacer("%EXP%", exp, "%ISS%", iss).Replace(s))
}

func TestVerifyMatchesJWTParser(t *testing.T) {
	f, k := edFixture(t)
	ref := referenceParser(f.cfg, k)
	accepted := 0
	for _, c := range jwsCases {
		h, p := expandCase(c[0], f.cfg.Issuer), expandCase(c[1], f.cfg.Issuer)
		compareWithJWTParser(t, f, ref, k, h, p)
		if _, err := f.v.Verify(context.Background(), signRaw(k, h, p)); err == nil {
			accepted++
		}
	}
	if accepted < 5 || accepted > len(jwsCases)-10 {
		t.Fatalf("%d of %d cases accepted: the table no longer tests both sides", accepted, len(jwsCases))
	}
}

// FuzzVerifyMatchesJWTParser: for any header and payload signed with the issuer's key,
// scopegate accepts exactly what jwt.Parser accepted (duplicate names aside: refused) and
// reads the same identity from it.
func FuzzVerifyMatchesJWTParser(f *testing.F) {
	fx, k := edFixture(f)
	for _, c := range jwsCases {
		f.Add(expandCase(c[0], fx.cfg.Issuer), expandCase(c[1], fx.cfg.Issuer))
	}
	ref := referenceParser(fx.cfg, k)
	f.Fuzz(func(t *testing.T, header, payload []byte) {
		compareWithJWTParser(t, fx, ref, k, header, payload)
	})
}

// BenchmarkDecode compares what this package does before the signature check (split,
// decode, read header and claims) with jwt.Parser.ParseUnverified doing the same into
// accessClaims: the step jws.go replaced.
func BenchmarkDecode(b *testing.B) {
	k := testissuer.NewKey("k1", "RS256")
	is := &testissuer.Issuer{Issuer: "https://idp.example"}
	raw := testissuer.Sign(k, is.Standard(aud, "alice", "orders:read orders:write", time.Hour), map[string]any{"typ": "at+jwt"})
	names := claimNames{scope: []string{"scope", "scp"}, clientID: []string{"client_id", "azp"}}
	b.Run("jwt-parser", func(b *testing.B) {
		p := jwt.NewParser(jwt.WithStrictDecoding())
		b.ReportAllocs()
		for b.Loop() {
			c := &accessClaims{names: &names}
			tok, _, err := p.ParseUnverified(raw, c)
			if err != nil || tok.Header["alg"] != "RS256" || c.sub != "alice" {
				b.Fatal(err)
			}
		}
	})
	b.Run("scopegate", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			tok, e := split(raw)
			if e != nil {
				b.Fatal(e)
			}
			sc := scratches.Get().(*scratch)
			h, e := readHeader(tok.header, sc.header[:])
			if e != nil || h.alg != "RS256" {
				b.Fatal(e)
			}
			payload, err := decodeSegment(nil, tok.payload)
			if err != nil {
				b.Fatal(err)
			}
			p := parsers.Get()
			obj, err := parseObject(p, payload)
			if err != nil {
				b.Fatal(err)
			}
			c := &accessClaims{names: &names}
			if err := c.read(obj, payload); err != nil || c.sub != "alice" {
				b.Fatal(err)
			}
			if _, err := decodeSegment(sc.sig[:], tok.signature); err != nil {
				b.Fatal(err)
			}
			parsers.Put(p)
			scratches.Put(sc)
		}
	})
}
