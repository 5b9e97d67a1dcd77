// Package yamlfile decodes scopegate's YAML config documents the one strict way they all
// share: unknown fields are errors, a file holds exactly one document, and an error names
// the field at fault (issuers[0].leeway), not only its line.
package yamlfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

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
			return nameFields(data, te)
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
func nameFields(data []byte, te *yaml.TypeError) error {
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
		if path, ok := pathAt(&root, line, errorKind(m), ""); ok && path != "" {
			msgs[i] = path + ": " + m
		}
	}
	return errors.New(strings.Join(msgs, "\n"))
}

// pathAt finds the field on line that an error is about: a key ("field x not found"), a
// list or map ("cannot unmarshal !!seq"), or else a scalar value; deepest first.
func pathAt(n *yaml.Node, line int, kind yaml.Kind, prefix string) (string, bool) {
	is := func(c *yaml.Node) bool { return c.Kind == kind && c.Line == line }
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if p, ok := pathAt(c, line, kind, prefix); ok {
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
			if (kind == keyKind && k.Line == line) || is(v) {
				return p, true
			}
			if q, ok := pathAt(v, line, kind, p); ok {
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
			if q, ok := pathAt(c, line, kind, p); ok {
				return q, true
			}
		}
	}
	return "", false
}

// keyKind marks a search for a mapping key (no yaml.Kind is zero).
const keyKind yaml.Kind = 0

// errorKind says what kind of node a yaml.v3 error message is about.
func errorKind(msg string) yaml.Kind {
	switch {
	case strings.Contains(msg, " not found in type "):
		return keyKind
	case strings.Contains(msg, "cannot unmarshal !!seq"):
		return yaml.SequenceNode
	case strings.Contains(msg, "cannot unmarshal !!map"):
		return yaml.MappingNode
	}
	return yaml.ScalarNode
}
