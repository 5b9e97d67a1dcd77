package bootstrap

import (
	"encoding/json"
	"fmt"
)

// jsonFromYAML converts a decoded YAML document to JSON (YAML maps may have non-string keys,
// which JSON cannot express: those are errors).
func jsonFromYAML(v any) ([]byte, error) {
	c, err := toJSONValue(v)
	if err != nil {
		return nil, err
	}
	return json.Marshal(c)
}

func toJSONValue(v any) (any, error) {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			c, err := toJSONValue(e)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			out[k] = c
		}
		return out, nil
	case map[any]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			ks, ok := k.(string)
			if !ok {
				return nil, fmt.Errorf("map key %v is not a string", k)
			}
			c, err := toJSONValue(e)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", ks, err)
			}
			out[ks] = c
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			c, err := toJSONValue(e)
			if err != nil {
				return nil, fmt.Errorf("[%d]: %w", i, err)
			}
			out[i] = c
		}
		return out, nil
	}
	return v, nil
}
