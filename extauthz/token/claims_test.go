package token

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/scopegate/scopegate/extauthz/denial"
)

var testNames = claimNames{scope: []string{"scope", "scp"}, clientID: []string{"client_id", "azp"}}

// claimSets are payloads whose registered claims jwt.MapClaims and accessClaims must read
// alike (none has a duplicate name: accessClaims refuses those, see TestClaimsStrict).
var claimSets = []string{
	`{"iss":"https://idp","sub":"alice","aud":"api","exp":1900000000,"iat":1800000000,"nbf":1800000000,"jti":"j1","scope":"a b a","client_id":"cli"}`,
	`{"aud":["x","api"],"exp":1900000000.75,"scp":["a",7,"b",null],"scope":"b c","azp":"app"}`,
	`{"exp":0,"iat":0,"nbf":0}`,
	`{"exp":"1900000000"}`,
	`{"exp":null,"iat":true,"nbf":{}}`,
	`{"iss":7,"sub":["s"]}`,
	`{"aud":7}`, `{"aud":null}`, `{"aud":{"a":1}}`, `{"aud":["api",7]}`, `{"aud":[]}`, `{"aud":""}`,
	`{"exp":-1}`, `{"exp":1e10}`, `{"exp":9.3e18}`, `{"exp":1.5e-7}`,
	`{"scope":7,"scp":"not a list","client_id":5,"azp":""}`,
	`{"client_id":"","azp":"fallback"}`,
	`{"Scope":"admin","ISS":"x","Exp":1}`,
	`{"\u0073cope":"escaped","n":{"deep":[1,{"x":null}]}}`,
	`{}`,
}

// reference reads a MapClaims the way scopegate read claims before accessClaims, for the
// fields jwt.Claims does not cover.
func reference(m jwt.MapClaims) (scopes []string, badScope, clientID, jti string) {
	seen := map[string]bool{}
	add := func(s string) {
		if s != "" && !seen[s] {
			seen[s] = true
			scopes = append(scopes, s)
		}
	}
scopeClaims:
	for _, c := range testNames.scope {
		v, present := m[c]
		if !present {
			continue
		}
		switch v := v.(type) {
		case string:
			for _, s := range strings.Fields(v) {
				add(s)
			}
		case []any:
			for _, s := range v {
				str, ok := s.(string)
				if !ok {
					scopes, badScope = nil, c
					break scopeClaims
				}
				add(str)
			}
		default: // a number, an object, null: the token is malformed
			scopes, badScope = nil, c
			break scopeClaims
		}
	}
	if scopes == nil {
		scopes = []string{}
	}
	for _, c := range testNames.clientID {
		if v, ok := m[c].(string); ok && v != "" {
			clientID = v
			break
		}
	}
	jti, _ = m["jti"].(string)
	return scopes, badScope, clientID, jti
}

func compareWithMapClaims(t *testing.T, payload []byte) {
	t.Helper()
	var m jwt.MapClaims
	if err := json.Unmarshal(payload, &m); err != nil || m == nil {
		return // not a JSON object encoding/json can hold: nothing to compare
	}
	c := &accessClaims{names: &testNames}
	if err := json.Unmarshal(payload, c); err != nil {
		if errors.Is(err, errDuplicateClaim) {
			return // encoding/json keeps the last duplicate; accessClaims refuses
		}
		t.Fatalf("%s: accessClaims refused what MapClaims read: %v", payload, err)
	}
	type got struct {
		v   any
		err bool
	}
	pairs := []struct {
		name       string
		want, have got
	}{
		{"exp", g(m.GetExpirationTime()), g(c.GetExpirationTime())},
		{"iat", g(m.GetIssuedAt()), g(c.GetIssuedAt())},
		{"nbf", g(m.GetNotBefore()), g(c.GetNotBefore())},
		{"iss", g(m.GetIssuer()), g(c.GetIssuer())},
		{"sub", g(m.GetSubject()), g(c.GetSubject())},
		{"aud", g(m.GetAudience()), g(c.GetAudience())},
	}
	for _, p := range pairs {
		if p.want.err != p.have.err || (!p.want.err && !reflect.DeepEqual(p.want.v, p.have.v)) {
			t.Errorf("%s: %s: MapClaims %+v, accessClaims %+v", payload, p.name, p.want, p.have)
		}
	}
	scopes, badScope, clientID, jti := reference(m)
	if !reflect.DeepEqual(scopes, c.scopes) || badScope != c.badScope || clientID != c.clientID || jti != c.jti {
		t.Errorf("%s: scopes %q (bad claim %q) client %q jti %q, want %q (%q) %q %q", payload, c.scopes, c.badScope, c.clientID, c.jti, scopes, badScope, clientID, jti)
	}
}

func g[T any](v T, err error) struct {
	v   any
	err bool
} {
	var out any = v
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Pointer && rv.IsNil() {
		out = nil
	}
	if cs, ok := out.(jwt.ClaimStrings); ok && len(cs) == 0 {
		out = nil
	}
	return struct {
		v   any
		err bool
	}{out, err != nil}
}

// accessClaims reads every registered claim as jwt.MapClaims does (value, absence and
// wrong-type error alike), and scopes, client id and jti as scopegate's map-based reader did.
func TestClaimsMatchMapClaims(t *testing.T) {
	for _, p := range claimSets {
		compareWithMapClaims(t, []byte(p))
	}
}

func FuzzClaimsMatchMapClaims(f *testing.F) {
	for _, p := range claimSets {
		f.Add([]byte(p))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		compareWithMapClaims(t, payload)
	})
}

// Names are exact and unique: what a case-insensitive or last-wins reader would take
// differently is refused or ignored.
func TestClaimsStrict(t *testing.T) {
	var many strings.Builder
	many.WriteString("{")
	for i := range 40 {
		fmt.Fprintf(&many, `"k%d":%d,`, i, i)
	}
	many.WriteString(`"k7":"again"}`)
	tests := []struct {
		name, payload string
		dup           bool
		scopes        []string
		iss           string
	}{
		{"other case is another claim", `{"Scope":"admin","SCP":["admin"],"Iss":"x","scope":"read"}`, false, []string{"read"}, ""},
		{"escaped name is the same name", `{"\u0073cope":"read"}`, false, []string{"read"}, ""},
		{"duplicate scope", `{"scope":"read","scope":"admin"}`, true, nil, ""},
		{"duplicate iss", `{"iss":"https://idp","iss":"https://evil"}`, true, nil, ""},
		{"duplicate escaped", `{"scope":"read","\u0073cope":"admin"}`, true, nil, ""},
		{"duplicate claim nobody reads", `{"x":1,"x":2}`, true, nil, ""},
		{"duplicate among many", many.String(), true, nil, ""},
	}
	for _, tt := range tests {
		c := &accessClaims{names: &testNames}
		err := json.Unmarshal([]byte(tt.payload), c)
		if tt.dup {
			if !errors.Is(err, errDuplicateClaim) {
				t.Errorf("%s: err = %v, want a duplicate-claim error", tt.name, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if !reflect.DeepEqual(c.scopes, tt.scopes) || c.iss != tt.iss {
			t.Errorf("%s: scopes %q iss %q, want %q %q", tt.name, c.scopes, c.iss, tt.scopes, tt.iss)
		}
	}
}

// The whole claims set is decoded only when asked for, and then completely.
func TestIdentityClaimsOnDemand(t *testing.T) {
	payload := `{"iss":"https://idp","exp":1900000000,"scope":"a","tenant":{"id":"t1","tags":["x"]},"n":1.5}`
	c := &accessClaims{names: &testNames}
	if err := json.Unmarshal([]byte(payload), c); err != nil {
		t.Fatal(err)
	}
	id := newIdentity("demo", c, "k1")
	if id.claims != nil {
		t.Fatal("claims decoded before anyone asked")
	}
	var want map[string]any
	if err := json.Unmarshal([]byte(payload), &want); err != nil {
		t.Fatal(err)
	}
	if got := id.Claims(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Claims() = %v, want %v", got, want)
	}

	// From a map (scopegate check): the same reading rules, the map kept as given.
	id2, err := IdentityFromClaims("demo", want, testNames.scope, testNames.clientID)
	if err != nil {
		t.Fatal(err)
	}
	if id2.Iss != "https://idp" || !reflect.DeepEqual(id2.Scopes, []string{"a"}) || id2.ExpiresAt.Unix() != 1900000000 || !reflect.DeepEqual(id2.Claims(), want) {
		t.Fatalf("identity from claims = %+v", id2)
	}
}

// The authentication claims (acr, amr, auth_time) are read exactly: a wrong type refuses the
// token as malformed, a null or an absent claim is none, and auth_time 0 counts as absent.
func TestAuthnClaims(t *testing.T) {
	tests := []struct {
		name, payload string
		acr           string
		amr           []string
		authTime      int64 // unix seconds; 0: none
		bad           *denial.Denial
	}{
		{"all three", `{"acr":"urn:mfa","amr":["pwd","otp"],"auth_time":1800000000}`, "urn:mfa", []string{"pwd", "otp"}, 1800000000, nil},
		{"none", `{}`, "", nil, 0, nil},
		{"nulls", `{"acr":null,"amr":null,"auth_time":null}`, "", nil, 0, nil},
		{"auth_time zero is absent", `{"auth_time":0}`, "", nil, 0, nil},
		{"auth_time with a fraction", `{"auth_time":1800000000.5}`, "", nil, 1800000000, nil},
		{"empty amr", `{"amr":[]}`, "", []string{}, 0, nil},
		{"acr a number", `{"acr":2}`, "", nil, 0, errBadACR},
		{"acr a list", `{"acr":["mfa"]}`, "", nil, 0, errBadACR},
		{"amr a string", `{"amr":"pwd"}`, "", nil, 0, errBadAMR},
		{"amr with a number", `{"amr":["pwd",1]}`, "", nil, 0, errBadAMR},
		{"auth_time a string", `{"auth_time":"1800000000"}`, "", nil, 0, errBadAuthTime},
		{"auth_time negative", `{"auth_time":-5}`, "", nil, 0, errBadAuthTime},
		{"auth_time a bool", `{"auth_time":true}`, "", nil, 0, errBadAuthTime},
	}
	for _, tt := range tests {
		c := &accessClaims{names: &testNames}
		if err := json.Unmarshal([]byte(tt.payload), c); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if c.badAuthn != tt.bad {
			t.Errorf("%s: refusal %v, want %v", tt.name, c.badAuthn, tt.bad)
			continue
		}
		if tt.bad != nil {
			if tt.bad.Reason != "malformed" {
				t.Errorf("%s: reason %q, want malformed", tt.name, tt.bad.Reason)
			}
			if _, err := IdentityFromClaims("demo", mustMap(t, tt.payload), testNames.scope, testNames.clientID); !errors.Is(err, tt.bad) {
				t.Errorf("%s: IdentityFromClaims err %v, want %v", tt.name, err, tt.bad)
			}
			continue
		}
		id := newIdentity("demo", c, "k1")
		var at int64
		if !id.AuthTime.IsZero() {
			at = id.AuthTime.Unix()
		}
		if id.ACR != tt.acr || !reflect.DeepEqual(id.AMR, tt.amr) || at != tt.authTime {
			t.Errorf("%s: acr %q amr %q auth_time %d, want %q %q %d", tt.name, id.ACR, id.AMR, at, tt.acr, tt.amr, tt.authTime)
		}
	}
}

func mustMap(t *testing.T, payload string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(payload), &m); err != nil {
		t.Fatal(err)
	}
	return m
}
