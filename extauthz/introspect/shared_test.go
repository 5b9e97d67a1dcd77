package introspect

import (
	"reflect"
	"testing"
)

// An answer written to the store reads back as Parse read it; a damaged one is an error,
// never a panic or a half answer.
func TestSharedEncoding(t *testing.T) {
	body := []byte(`{"active":true,"scope":"a b","client_id":"c","sub":"s","iss":"https://idp","jti":"j","token_type":"DPoP",` +
		`"aud":["x","y"],"exp":4102444800,"iat":1700000000,"nbf":1700000000,"cnf":{"jkt":"t","x5t#S256":"u"},"extra":{"k":1}}`)
	for _, b := range [][]byte{body, []byte(`{"active":false}`), []byte(`{"active":true,"exp":1}`)} {
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
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, r)
		}
		for i := range len(enc) - len(r.Raw) {
			if _, err := decodeShared(enc[:i]); err == nil {
				t.Errorf("truncated to %d bytes: decoded", i)
			}
		}
	}
	if _, err := decodeShared([]byte{2, 1}); err == nil {
		t.Error("unknown version decoded")
	}
}
