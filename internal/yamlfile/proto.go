package yamlfile

import (
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"go.yaml.in/yaml/v3"
)

// ProtoNode is m as the YAML scopegate shows Envoy config in (generated bootstraps, golden
// files): proto field names, block style, and no JSON quoting except where a string would
// otherwise read as another type.
func ProtoNode(m proto.Message) (*yaml.Node, error) {
	js, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		return nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(js, &doc); err != nil {
		return nil, err
	}
	root := doc.Content[0]
	blockStyle(root)
	return root, nil
}

func blockStyle(n *yaml.Node) {
	if n.Kind != yaml.ScalarNode {
		n.Style = 0
	} else if n.Style == yaml.DoubleQuotedStyle {
		n.Style = 0
		n.Tag = "!!str"
	}
	for _, c := range n.Content {
		blockStyle(c)
	}
}
