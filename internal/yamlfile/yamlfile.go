// Package yamlfile decodes scopegate's YAML config documents the one strict way they all
// share: unknown fields are errors, a file holds exactly one document, and an error names
// the field at fault (issuers[0].leeway), not only its line. ProtoNode is the one way Envoy
// config is shown as YAML.
package yamlfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// ErrEmpty is returned for a document with nothing in it.
var ErrEmpty = errors.New("empty document")

// Decode decodes exactly one YAML document from data into v, refusing unknown fields.
func Decode(data []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return ErrEmpty
		}
		var te *yaml.TypeError
		if errors.As(err, &te) {
			return nameFields(data, te, reflect.TypeOf(v))
		}
		return err
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return errors.New("more than one YAML document")
	}
	return nil
}

// nameFields rewrites yaml.v3's "line 7: cannot unmarshal ..." as
// "issuers[0].leeway: line 7: cannot unmarshal ...", one line per error.
//
// Go type names are the reader's business neither way: an unknown field suggests the nearest
// known one, a value of the wrong kind says what kind is wanted.
func nameFields(data []byte, te *yaml.TypeError, target reflect.Type) error {
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil {
		return te
	}
	msgs := make([]string, len(te.Errors))
	for i, m := range te.Errors {
		msgs[i] = m
		rest, ok := strings.CutPrefix(m, "line ")
		if !ok {
			continue
		}
		num, _, _ := strings.Cut(rest, ":")
		line, err := strconv.Atoi(num)
		if err != nil {
			continue
		}
		kind, key := errorKind(m)
		path, ok := pathAt(&root, line, kind, key, "")
		m = explain(m, target, path)
		msgs[i] = m
		if ok && path != "" {
			msgs[i] = path + ": " + m
		}
	}
	return errors.New(strings.Join(msgs, "\n"))
}

// pathAt finds the field on line that an error is about: a key ("field x not found": the key
// named key, so that in a one-line map such as `polling: {min_dely: 1s}` it is min_dely, not
// polling), a list or map ("cannot unmarshal !!seq"), or else a scalar value.
func pathAt(n *yaml.Node, line int, kind yaml.Kind, key, prefix string) (string, bool) {
	is := func(c *yaml.Node) bool { return c.Kind == kind && c.Line == line }
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if p, ok := pathAt(c, line, kind, key, prefix); ok {
				return p, true
			}
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if prefix != "" {
				p = prefix + "." + k.Value
			}
			if (kind == keyKind && k.Line == line && k.Value == key) || is(v) {
				return p, true
			}
			if q, ok := pathAt(v, line, kind, key, p); ok {
				return q, true
			}
		}
	case yaml.SequenceNode:
		same := 0
		for _, c := range n.Content {
			if is(c) {
				same++
			}
		}
		if same > 1 {
			return prefix, true // a flow list on one line: the list, not a guessed item
		}
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", prefix, i)
			if is(c) {
				return p, true
			}
			if q, ok := pathAt(c, line, kind, key, p); ok {
				return q, true
			}
		}
	}
	return "", false
}

// keyKind marks a search for a mapping key (no yaml.Kind is zero).
const keyKind yaml.Kind = 0

// errorKind says what kind of node a yaml.v3 error message is about, and for an unknown
// field, its name.
func errorKind(msg string) (yaml.Kind, string) {
	switch {
	case strings.Contains(msg, " not found in type "):
		if g := unknownField.FindStringSubmatch(msg); g != nil {
			return keyKind, g[2]
		}
		return keyKind, ""
	case strings.Contains(msg, "cannot unmarshal !!seq"):
		return yaml.SequenceNode, ""
	case strings.Contains(msg, "cannot unmarshal !!map"):
		return yaml.MappingNode, ""
	}
	return yaml.ScalarNode, ""
}

var (
	unknownField = regexp.MustCompile(`^(line \d+: field (\S+) not found) in type .*$`)
	wrongKind    = regexp.MustCompile("^(line \\d+: cannot unmarshal) !!\\w+ (`.*`) into .*$")
)

// explain rewrites yaml.v3's message m about the field at path of target without Go type
// names: "field colour not found; did you mean \"color\"?", "cannot unmarshal `ten`: want a
// duration such as 30s". Other messages are kept.
func explain(m string, target reflect.Type, path string) string {
	if g := unknownField.FindStringSubmatch(m); g != nil {
		parent := path
		if i := strings.LastIndexAny(parent, "."); i >= 0 {
			parent = parent[:i]
		} else {
			parent = ""
		}
		known := fieldNames(typeAt(target, parent))
		if best := nearest(g[2], known); best != "" {
			return fmt.Sprintf("%s; did you mean %q?", g[1], best)
		}
		if len(known) > 0 {
			return fmt.Sprintf("%s (known fields: %s)", g[1], strings.Join(known, ", "))
		}
		return g[1]
	}
	if g := wrongKind.FindStringSubmatch(m); g != nil {
		if want := kindOf(typeAt(target, path)); want != "" {
			return g[1] + " " + g[2] + ": want " + want
		}
		return g[1] + " " + g[2]
	}
	return m
}

// typeAt follows a field path (issuers[0].leeway) through struct yaml tags; nil when lost.
func typeAt(t reflect.Type, path string) reflect.Type {
	for t != nil && (t.Kind() == reflect.Pointer) {
		t = t.Elem()
	}
	if path == "" || t == nil {
		return t
	}
	for _, part := range strings.Split(path, ".") {
		name, rest, _ := strings.Cut(part, "[")
		t = field(t, name)
		for ; t != nil && rest != ""; _, rest, _ = strings.Cut(rest, "[") {
			for t.Kind() == reflect.Pointer {
				t = t.Elem()
			}
			if t.Kind() != reflect.Slice && t.Kind() != reflect.Map {
				return nil
			}
			t = t.Elem()
		}
		if t == nil {
			return nil
		}
	}
	return t
}

func field(t reflect.Type, name string) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() == reflect.Map {
		return t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if tag == name {
			return f.Type
		}
	}
	return nil
}

// fieldNames lists a struct's yaml field names.
func fieldNames(t reflect.Type) []string {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		return nil
	}
	var out []string
	for i := range t.NumField() {
		tag, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if tag != "" && tag != "-" {
			out = append(out, tag)
		}
	}
	return out
}

// nearest is the known name closest to name by edit distance, if close enough to be a typo.
func nearest(name string, known []string) string {
	best, bestD := "", len(name)/2+1
	if bestD < 2 {
		bestD = 2
	}
	bestD++ // strictly less than the bound below wins
	for _, k := range known {
		if d := Distance(name, k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

// Distance is the Levenshtein distance (with adjacent transpositions counting once): what
// "did you mean" measures typos by, here and for the command line's flags.
func Distance(a, b string) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}

// kindOf says in words what a value of type t must be.
func kindOf(t reflect.Type) string {
	if t == nil {
		return ""
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == reflect.TypeOf(time.Duration(0)) {
		return "a duration such as 30s, 5m or 1h"
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "true or false"
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "a mapping of fields"
	}
	return ""
}
