package helm

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDashboardMetricsExist: every scopegate_ metric the Grafana dashboard queries is one the
// code registers (histogram series by their base name), and the dashboard covers what the
// chart promises: checks by result and reason, latency, token cache hit rate, JWKS refresh
// failures, policy revision, xDS NACKs and connected nodes.
func TestDashboardMetricsExist(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(chartDir, "dashboards", "scopegate.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatal(err)
	}
	registered := registeredMetrics(t)
	if len(registered) < 20 {
		t.Fatalf("found only %d registered metrics in the code: the scan is broken", len(registered))
	}
	metricRe := regexp.MustCompile(`scopegate_[a-z_]+`)
	used := map[string]bool{}
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			for _, m := range metricRe.FindAllString(tg.Expr, -1) {
				base := m
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					if b, ok := strings.CutSuffix(m, suffix); ok && registered[b] {
						base = b
					}
				}
				if !registered[base] {
					t.Errorf("panel %q queries %s, which scopegate does not export", p.Title, m)
				}
				used[base] = true
			}
		}
	}
	for _, m := range []string{
		"scopegate_checks_total", "scopegate_check_duration_seconds", "scopegate_token_cache_hits_total",
		"scopegate_token_cache_misses_total", "scopegate_jwks_refresh_failures_total", "scopegate_policy_revision_info",
		"scopegate_xds_nacks_total", "scopegate_xds_connected_nodes",
	} {
		if !used[m] {
			t.Errorf("the dashboard does not show %s", m)
		}
	}
}

// registeredMetrics scans scopegate's non-test Go source for metric names given to the
// Prometheus client (Name: "scopegate_...").
func registeredMetrics(t *testing.T) map[string]bool {
	t.Helper()
	nameRe := regexp.MustCompile(`Name:\s*"(scopegate_[a-z_]+)"`)
	out := map[string]bool{}
	for _, dir := range []string{"../../extauthz", "../../controlplane", "../../internal"} {
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
				return err
			}
			src, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			for _, m := range nameRe.FindAllStringSubmatch(string(src), -1) {
				out[m[1]] = true
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}
