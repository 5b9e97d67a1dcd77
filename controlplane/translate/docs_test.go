package translate

import (
	"os"
	"strings"
	"testing"

	"github.com/scopegate/scopegate/controlplane/config"
)

// docs/controlplane.md says what the metadata document holds: it lists the DPoP algorithms
// (authz accepts DPoP by default), and the doc must not say otherwise.
func TestControlplaneDocAgreesOnDPoP(t *testing.T) {
	vh := &config.VirtualHost{Name: "api", ResourceMetadata: &config.ResourceMetadata{
		Resource: "https://api.example.com", AuthorizationServers: []string{"https://idp.example.com"}}}
	doc := string(vh.MetadataDocument())
	if !strings.Contains(doc, `"dpop_signing_alg_values_supported"`) {
		t.Fatalf("the metadata document lists no DPoP algorithms: %s", doc)
	}
	text, err := os.ReadFile("../../docs/controlplane.md")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(text), "DPoP is not supported") || strings.Contains(string(text), "never lists `dpop_signing_alg_values_supported`") {
		t.Fatal("docs/controlplane.md says DPoP is unsupported, but the metadata document lists dpop_signing_alg_values_supported")
	}
}
