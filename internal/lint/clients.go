package lint

import (
	"fmt"
	"os"

	"github.com/scopegate/scopegate/internal/yamlfile"
)

// ClientsFile is the clients file `scopegate lint --clients` reads: what each client of an
// identity provider may be granted, written by hand or exported from Keycloak, Okta or Entra
// ID, so the ungrantable-scopes check works without the demo IdP.
type ClientsFile struct {
	Clients []ClientGrant `yaml:"clients"`
}

// ClientGrant is one client: the scopes one of its tokens can carry together.
type ClientGrant struct {
	ID     string   `yaml:"id"`
	Scopes []string `yaml:"scopes"`
}

// LoadClients reads a clients file into grants; every error names the file and the field.
func LoadClients(path string) ([]Grant, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f ClientsFile
	if err := yamlfile.Decode(data, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(f.Clients) == 0 {
		return nil, fmt.Errorf("%s: clients: at least one client is required", path)
	}
	seen := map[string]bool{}
	grants := make([]Grant, 0, len(f.Clients))
	for i, c := range f.Clients {
		switch {
		case c.ID == "":
			return nil, fmt.Errorf("%s: clients[%d].id: required", path, i)
		case seen[c.ID]:
			return nil, fmt.Errorf("%s: clients[%d].id: %q is listed twice", path, i, c.ID)
		}
		for j, s := range c.Scopes {
			if s == "" {
				return nil, fmt.Errorf("%s: clients[%d].scopes[%d]: empty scope", path, i, j)
			}
		}
		seen[c.ID] = true
		grants = append(grants, Grant{Who: c.ID, Scopes: c.Scopes})
	}
	return grants, nil
}
