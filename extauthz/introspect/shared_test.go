package introspect

import (
	"reflect"
	"testing"
)

// An answer written to the store reads back as Parse read it, every member (one left out
// reads back as absent: a refresh token's token_use, a binding scopegate can't check); a
// damaged one is an error, never a panic or a half answer.
func TestSharedEncoding(t *testing.T) {
	full := []byte(`{"active":true,"scope":"a b","client_id":"c","sub":"s","iss":"https://idp","jti":"j","token_type":"DPoP",` +
		`"token_use":"refresh","aud":["x","y"],"acr":"mfa","amr":["pwd","otp"],"auth_time":1700000000,"exp":4102444800,"iat":1700000000,"nbf":1700000000,` +
		`"cnf":{"jkt":"t","x5t#S256":"u","jwk":{}},"extra":{"k":1}}`)
	r, err := Parse(full)
	if err != nil {
		t.Fatal(err)
	}
	// The full answer sets every member Parse fills, so the round trip below covers them all
	// (JWT and Age are not Parse's: a signed answer is stored as received, Age by the reader).
	rv := reflect.ValueOf(*r)
	for i := range rv.NumField() {
		if name := rv.Type().Field(i).Name; name != "JWT" && name != "Age" && rv.Field(i).IsZero() {
			t.Errorf("the full answer leaves Response.%s unset: add it to the test answer", name)
		}
	}
	bodies := [][]byte{full, []byte(`{"active":false}`), []byte(`{"active":true,"exp":1}`),
		[]byte(`{"active":true,"exp":4102444800,"cnf":{"x5t":"sha1"}}`), []byte(`{"active":true,"token_use":"id"}`)}
	for _, b := range bodies {
		r, err := Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		enc := encodeShared(r)
		got, err := decodeShared(enc)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, r) {
			t.Fatalf("round trip of %s:\n got %+v\nwant %+v", b, got, r)
		}
		for i := range len(enc) - len(r.Raw) {
			if _, err := decodeShared(enc[:i]); err == nil {
				t.Errorf("truncated to %d bytes: decoded", i)
			}
		}
	}
	for _, bad := range [][]byte{{1, 1}, {2, 1}, {4, 1}, {sharedVersion, 1 << 7}} {
		if _, err := decodeShared(append(bad, make([]byte, 16)...)); err == nil {
			t.Errorf("version %d, flags %#x: decoded", bad[0], bad[1])
		}
	}
}
