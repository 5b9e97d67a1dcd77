package policy

import (
	"errors"
	"fmt"
	"sort"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/scopegate/scopegate/internal/contract"
)

// Decision is the policy's answer, read from data.scopegate.authz.decision (or the configured
// query): an object with the fields below, or a plain boolean.
type Decision struct {
	Allow         bool     `json:"allow"`
	Status        int      `json:"status,omitempty"`
	Reason        string   `json:"reason,omitempty"`
	MissingScopes []string `json:"missing_scopes,omitempty"`
	// Headers go upstream on allow; ResponseHeaders go to the client either way. Sorted by name.
	Headers         []Header `json:"headers,omitempty"`
	ResponseHeaders []Header `json:"response_headers,omitempty"`
	// ACRValues and MaxAge ask for step-up (RFC 9470): with reason
	// insufficient_user_authentication (status 401 or absent), the answer is 401 with a
	// challenge naming them. At least one is set on such a decision, and neither on another.
	ACRValues []string `json:"acr_values,omitempty"`
	MaxAge    *int64   `json:"max_age,omitempty"`
}

// StepUp reports whether the decision asks for step-up authentication.
func (d *Decision) StepUp() bool { return d.Reason == contract.ReasonInsufficientUserAuthentication }

// Header is one header name and value.
type Header struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// ErrMalformed marks a decision of the wrong shape (a policy bug): it denies, never allows.
var ErrMalformed = errors.New("malformed decision")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// decodeDecision reads a decision value strictly: a wrong type anywhere is an error.
func decodeDecision(v ast.Value) (Decision, error) {
	switch v := v.(type) {
	case ast.Boolean:
		return Decision{Allow: bool(v)}, nil
	case ast.Object:
		return decodeObject(v)
	}
	return Decision{}, malformed("want an object or a boolean, got %s", ast.ValueName(v))
}

func decodeObject(o ast.Object) (Decision, error) {
	var d Decision
	allow := o.Get(ast.InternedTerm("allow"))
	if allow == nil {
		return d, malformed(`no "allow" field`)
	}
	b, ok := allow.Value.(ast.Boolean)
	if !ok {
		return d, malformed(`"allow" is %s, not a boolean`, ast.ValueName(allow.Value))
	}
	d.Allow = bool(b)
	var err error
	if t := o.Get(ast.InternedTerm("status")); t != nil {
		n, ok := t.Value.(ast.Number)
		i, isInt := n.Int()
		if !ok || !isInt || i < 200 || i > 599 {
			return d, malformed(`"status" %v is not an HTTP status`, t)
		}
		d.Status = i
	}
	if t := o.Get(ast.InternedTerm("reason")); t != nil {
		s, ok := t.Value.(ast.String)
		if !ok {
			return d, malformed(`"reason" is %s, not a string`, ast.ValueName(t.Value))
		}
		d.Reason = string(s)
	}
	if t := o.Get(ast.InternedTerm("missing_scopes")); t != nil {
		if d.MissingScopes, err = stringList(t.Value); err != nil {
			return d, malformed(`"missing_scopes": %v`, err)
		}
	}
	if t := o.Get(ast.InternedTerm("headers")); t != nil {
		if d.Headers, err = headerMap(t.Value); err != nil {
			return d, malformed(`"headers": %v`, err)
		}
	}
	if t := o.Get(ast.InternedTerm("response_headers")); t != nil {
		if d.ResponseHeaders, err = headerMap(t.Value); err != nil {
			return d, malformed(`"response_headers": %v`, err)
		}
	}
	return d, decodeStepUp(o, &d)
}

// decodeStepUp reads a step-up decision's acr_values (acr values fit for a challenge, RFC
// 9470) and max_age (whole seconds, 0 to a year), and checks that they come with, and only
// with, a 401 insufficient_user_authentication denial: a policy can't put a challenge on an
// allow or a 403, nor ask for step-up without saying what would do.
func decodeStepUp(o ast.Object, d *Decision) error {
	if t := o.Get(ast.InternedTerm("acr_values")); t != nil {
		vs, err := stringList(t.Value)
		if err != nil {
			return malformed(`"acr_values": %v`, err)
		}
		for _, v := range vs {
			if !contract.ValidACR(v) {
				return malformed(`"acr_values": %q is not an acr value (1 to 256 visible ASCII characters, no space, quote or backslash)`, v)
			}
		}
		d.ACRValues = vs
	}
	if t := o.Get(ast.InternedTerm("max_age")); t != nil {
		n, ok := t.Value.(ast.Number)
		i, isInt := n.Int64()
		if !ok || !isInt || i < 0 || i > contract.MaxMaxAge {
			return malformed(`"max_age" %v is not a whole number of seconds from 0 to a year`, t)
		}
		d.MaxAge = &i
	}
	switch asks := d.ACRValues != nil || d.MaxAge != nil; {
	case d.StepUp() && d.Allow:
		return malformed(`reason %q on an allow`, d.Reason)
	case d.StepUp() && d.Status != 0 && d.Status != 401:
		return malformed(`reason %q with status %d: step-up is 401`, d.Reason, d.Status)
	case d.StepUp() && !asks:
		return malformed(`reason %q without "acr_values" or "max_age": the client could not know what to do`, d.Reason)
	case d.StepUp() && len(d.MissingScopes) > 0:
		return malformed(`reason %q with "missing_scopes": ask for one thing at a time`, d.Reason)
	case asks && !d.StepUp():
		return malformed(`"acr_values" or "max_age" without reason %q`, contract.ReasonInsufficientUserAuthentication)
	}
	if d.StepUp() {
		d.Status = 401
	}
	return nil
}

func stringList(v ast.Value) ([]string, error) {
	var out []string
	add := func(t *ast.Term) error {
		s, ok := t.Value.(ast.String)
		if !ok {
			return fmt.Errorf("element %v is not a string", t)
		}
		out = append(out, string(s))
		return nil
	}
	switch v := v.(type) {
	case *ast.Array:
		for i := 0; i < v.Len(); i++ {
			if err := add(v.Elem(i)); err != nil {
				return nil, err
			}
		}
	case ast.Set:
		sorted := v.Sorted()
		for i := 0; i < sorted.Len(); i++ {
			if err := add(sorted.Elem(i)); err != nil {
				return nil, err
			}
		}
	default:
		return nil, fmt.Errorf("%s is not a list", ast.ValueName(v))
	}
	return out, nil
}

func headerMap(v ast.Value) ([]Header, error) {
	o, ok := v.(ast.Object)
	if !ok {
		return nil, fmt.Errorf("%s is not an object", ast.ValueName(v))
	}
	out := make([]Header, 0, o.Len())
	var err error
	o.Foreach(func(k, val *ast.Term) {
		ks, ok1 := k.Value.(ast.String)
		vs, ok2 := val.Value.(ast.String)
		if !ok1 || !ok2 {
			err = fmt.Errorf("header %v: names and values must be strings", k)
			return
		}
		if !validHeaderName(string(ks)) {
			err = fmt.Errorf("header name %q is not a lower-case token", string(ks))
			return
		}
		out = append(out, Header{Name: string(ks), Value: string(vs)})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}
