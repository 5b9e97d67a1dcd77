package oauthclient

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Challenge is one WWW-Authenticate challenge (RFC 9110 §11.6.1): a scheme and either its
// auth-params (names lower-cased; each at most once) or a token68.
type Challenge struct {
	Scheme  string
	Params  map[string]string
	Token68 string
}

// ParseChallenges reads a WWW-Authenticate field value, which may hold several challenges
// (several header lines are the same value joined with ", "). A leading "WWW-Authenticate:"
// (a header line pasted whole) is ignored. It fails on anything the grammar does not allow,
// rather than guess.
func ParseChallenges(v string) ([]Challenge, error) {
	v = strings.TrimSpace(v)
	if name, rest, ok := strings.Cut(v, ":"); ok && strings.EqualFold(strings.TrimSpace(name), "www-authenticate") {
		v = rest
	}
	p := &challengeParser{s: v}
	var out []Challenge
	for {
		p.skipListSeparators()
		if p.done() {
			break
		}
		c, err := p.challenge()
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("WWW-Authenticate: no challenge")
	}
	return out, nil
}

type challengeParser struct {
	s string
	i int
}

func (p *challengeParser) done() bool { return p.i >= len(p.s) }

func (p *challengeParser) skipOWS() {
	for !p.done() && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

func (p *challengeParser) skipListSeparators() {
	for !p.done() && (p.s[p.i] == ' ' || p.s[p.i] == '\t' || p.s[p.i] == ',') {
		p.i++
	}
}

func (p *challengeParser) fail(what string) error {
	return fmt.Errorf("WWW-Authenticate: %s at byte %d of %q", what, p.i, p.s)
}

// token reads an RFC 9110 token ("" if none starts here).
func (p *challengeParser) token() string {
	start := p.i
	for !p.done() && isTChar(p.s[p.i]) {
		p.i++
	}
	return p.s[start:p.i]
}

func isTChar(c byte) bool {
	return c > ' ' && c < 0x7f && !strings.ContainsRune("\"(),/:;<=>?@[\\]{}", rune(c))
}

func (p *challengeParser) challenge() (Challenge, error) {
	c := Challenge{Scheme: p.token()}
	if c.Scheme == "" {
		return c, p.fail("expected an auth-scheme")
	}
	if p.done() || p.s[p.i] == ',' {
		return c, nil
	}
	if p.s[p.i] != ' ' {
		return c, p.fail("expected a space after the auth-scheme")
	}
	p.skipOWS()
	if p.done() || p.s[p.i] == ',' {
		return c, nil
	}
	if t, ok := p.token68(); ok {
		c.Token68 = t
		return c, nil
	}
	c.Params = map[string]string{}
	for {
		name := strings.ToLower(p.token())
		if name == "" {
			return c, p.fail("expected a parameter name")
		}
		p.skipOWS()
		if p.done() || p.s[p.i] != '=' {
			return c, p.fail("expected '=' after parameter " + name)
		}
		p.i++
		p.skipOWS()
		val, err := p.value()
		if err != nil {
			return c, err
		}
		if _, dup := c.Params[name]; dup {
			return c, p.fail("parameter " + name + " given twice")
		}
		c.Params[name] = val
		p.skipOWS()
		if p.done() {
			return c, nil
		}
		if p.s[p.i] != ',' {
			return c, p.fail("expected ',' between parameters")
		}
		// Another parameter of this challenge (name "="), or the next challenge (a scheme).
		save := p.i
		p.skipListSeparators()
		if p.done() {
			return c, nil
		}
		mark := p.i
		p.token()
		p.skipOWS()
		isParam := !p.done() && p.s[p.i] == '='
		if !isParam {
			p.i = save
			return c, nil
		}
		p.i = mark
	}
}

// token68 reads 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=" when it is the
// whole of the challenge's credentials (followed by the end or a comma); otherwise it leaves
// the position unchanged.
func (p *challengeParser) token68() (string, bool) {
	start, i := p.i, p.i
	for i < len(p.s) && (isAlnum(p.s[i]) || strings.IndexByte("-._~+/", p.s[i]) >= 0) {
		i++
	}
	if i == start {
		return "", false
	}
	for i < len(p.s) && p.s[i] == '=' {
		i++
	}
	j := i
	for j < len(p.s) && (p.s[j] == ' ' || p.s[j] == '\t') {
		j++
	}
	if j < len(p.s) && p.s[j] != ',' {
		return "", false
	}
	p.i = j
	return p.s[start:i], true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// value reads a token or a quoted-string (with its quoted-pairs undone).
func (p *challengeParser) value() (string, error) {
	if p.done() {
		return "", p.fail("expected a parameter value")
	}
	if p.s[p.i] != '"' {
		t := p.token()
		if t == "" {
			return "", p.fail("expected a token or a quoted-string")
		}
		return t, nil
	}
	p.i++
	var b strings.Builder
	for !p.done() {
		c := p.s[p.i]
		switch {
		case c == '"':
			p.i++
			return b.String(), nil
		case c == '\\':
			if p.i+1 >= len(p.s) || !quotable(p.s[p.i+1]) {
				return "", p.fail("bad quoted-pair")
			}
			b.WriteByte(p.s[p.i+1])
			p.i += 2
		case c == '\t' || c == ' ' || c >= 0x21 && c != 0x7f:
			b.WriteByte(c)
			p.i++
		default:
			return "", p.fail("control character in a quoted-string")
		}
	}
	return "", p.fail("unterminated quoted-string")
}

func quotable(c byte) bool { return c == '\t' || c == ' ' || c >= 0x21 && c != 0x7f }

// StepUp is what a resource server's RFC 9470 challenge asks for: the authentication context
// classes it accepts and how recent the authentication must be, to be requested from the
// authorization server (the acr_values and max_age authorization request parameters).
type StepUp struct {
	// Scheme is the challenge's scheme (Bearer or DPoP).
	Scheme string
	// ACRValues, in the resource's order of preference; empty when it named none.
	ACRValues []string
	// MaxAge is nil when the challenge sets no max_age.
	MaxAge *time.Duration
	// Scope and ResourceMetadata are the challenge's scope and resource_metadata, when given.
	Scope, ResourceMetadata string
	// Description is the challenge's error_description.
	Description string
}

// ErrNoStepUp: the challenges hold no error="insufficient_user_authentication".
var ErrNoStepUp = errors.New(`the challenge does not ask for step-up authentication (no error="insufficient_user_authentication")`)

// ParseStepUp finds the challenge with error="insufficient_user_authentication" in a
// WWW-Authenticate value and reads what it asks for.
func ParseStepUp(v string) (*StepUp, error) {
	cs, err := ParseChallenges(v)
	if err != nil {
		return nil, err
	}
	for _, c := range cs {
		if c.Params["error"] != "insufficient_user_authentication" {
			continue
		}
		s := &StepUp{Scheme: c.Scheme, ACRValues: strings.Fields(c.Params["acr_values"]), Scope: c.Params["scope"],
			ResourceMetadata: c.Params["resource_metadata"], Description: c.Params["error_description"]}
		if m, ok := c.Params["max_age"]; ok {
			n, err := strconv.ParseUint(m, 10, 31)
			if err != nil {
				return nil, fmt.Errorf("WWW-Authenticate: max_age %q is not a number of seconds", m)
			}
			d := time.Duration(n) * time.Second
			s.MaxAge = &d
		}
		if len(s.ACRValues) == 0 && s.MaxAge == nil {
			return nil, errors.New(`WWW-Authenticate: insufficient_user_authentication without acr_values or max_age: nothing to ask for`)
		}
		return s, nil
	}
	for _, c := range cs {
		if e := c.Params["error"]; e != "" {
			return nil, fmt.Errorf("%w: %s error=%q", ErrNoStepUp, c.Scheme, e)
		}
	}
	return nil, ErrNoStepUp
}
