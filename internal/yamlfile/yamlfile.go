// Package yamlfile decodes scopegate's YAML config documents the one strict way they all
// share: unknown fields are errors, and a file holds exactly one document.
package yamlfile

import (
	"bytes"
	"errors"
	"io"

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
		return err
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return errors.New("more than one YAML document")
	}
	return nil
}
