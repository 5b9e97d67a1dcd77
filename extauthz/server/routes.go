package server

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/scopegate/scopegate/extauthz/config"
	"github.com/scopegate/scopegate/extauthz/routes"
	"github.com/scopegate/scopegate/internal/watch"
)

// routeTable is authz's route table in force (mesh mode) and how it got there: /readyz shows
// it, and a changed routes_file replaces it (a bad file is refused, the last good table
// stays).
type routeTable struct {
	cfg     *config.Config
	live    *routes.Live // nil without a table
	log     *slog.Logger
	reloads *prometheus.CounterVec

	mu     sync.Mutex
	status RouteStatus
}

// RouteStatus is what /readyz says of route contracts.
type RouteStatus struct {
	// Source is where route contracts come from: "context_extensions" only, or also
	// "routes_file" or "routes" (inline), authz's own table.
	Source string `json:"source"`
	File   string `json:"file,omitempty"`
	// Unmatched is what a request that names no route and matches none gets: "deny" or
	// "token_only".
	Unmatched    string    `json:"unmatched"`
	VirtualHosts int       `json:"virtual_hosts,omitempty"`
	Routes       int       `json:"routes,omitempty"`
	LoadedAt     time.Time `json:"loaded_at,omitzero"`
	// LastError is the last reload's error while the previous table stays in force.
	LastError string `json:"last_error,omitempty"`
}

func newRouteTable(cfg *config.Config, live *routes.Live, log *slog.Logger, reg prometheus.Registerer) *routeTable {
	rt := &routeTable{cfg: cfg, live: live, log: log,
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scopegate_route_table_reloads_total",
			Help: "Reloads of the routes_file route table (mesh mode), by result (ok, error).",
		}, []string{"result"}),
		status: RouteStatus{Source: "context_extensions", Unmatched: cfg.Unmatched}}
	reg.MustRegister(rt.reloads)
	switch {
	case cfg.RoutesFile != "":
		rt.status.Source, rt.status.File = "routes_file", cfg.RoutesFile
	case cfg.Routes != nil:
		rt.status.Source = "routes"
	}
	if t := live.Load(); t != nil {
		rt.loaded(t)
	}
	return rt
}

func (rt *routeTable) loaded(t *routes.Table) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.status.VirtualHosts, rt.status.Routes = t.Len()
	rt.status.LoadedAt, rt.status.LastError = time.Now().UTC(), ""
}

// Status is the current RouteStatus.
func (rt *routeTable) Status() RouteStatus {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.status
}

// announce says at start where route contracts come from and what an unmatched request gets.
func (rt *routeTable) announce() {
	st := rt.Status()
	if st.Source == "context_extensions" {
		rt.log.Info("route scopes come only from context extensions (scopegate xds, Envoy Gateway, Contour): no routes_file or routes is configured",
			"unmatched", st.Unmatched, "a request without them", unmatchedMeaning(st.Unmatched))
		return
	}
	rt.log.Info("route table loaded (mesh mode): a request whose context extensions name no route is matched against it",
		"source", st.Source, "file", st.File, "virtual_hosts", st.VirtualHosts, "routes", st.Routes,
		"unmatched", st.Unmatched, "a request that matches no route", unmatchedMeaning(st.Unmatched))
}

func unmatchedMeaning(u string) string {
	if u == config.UnmatchedDeny {
		return "is denied (403, no_route)"
	}
	return "is decided on its token alone (token_only: any valid token passes)"
}

// reload reads routes_file again; a file that fails to load leaves the table in force.
func (rt *routeTable) reload() {
	t, err := config.LoadRouteTable(rt.cfg.RoutesFile)
	if err != nil {
		rt.reloads.WithLabelValues("error").Inc()
		rt.mu.Lock()
		rt.status.LastError = err.Error()
		rt.mu.Unlock()
		rt.log.Error("routes_file reload refused; the last good route table stays in force", "error", err)
		return
	}
	rt.live.Store(t)
	rt.loaded(t)
	rt.reloads.WithLabelValues("ok").Inc()
	vhosts, n := t.Len()
	rt.log.Info("routes_file reloaded", "file", rt.cfg.RoutesFile, "virtual_hosts", vhosts, "routes", n)
}

// watch reloads routes_file when it changes (in place, by rename, or by a ConfigMap's swap),
// until ctx ends; reloaded, when set, is told after each attempt (tests).
func (rt *routeTable) watch(ctx context.Context, reloaded func()) error {
	if rt.cfg.RoutesFile == "" {
		return nil
	}
	w, err := watch.New(rt.log, 0)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithCancel(ctx)
	go w.Run(wctx)
	if err := w.Set([]string{rt.cfg.RoutesFile}); err != nil {
		cancel()
		return err
	}
	go func() {
		defer cancel()
		for {
			select {
			case <-ctx.Done():
				return
			case <-w.Changes():
				rt.reload()
				if reloaded != nil {
					reloaded()
				}
			}
		}
	}()
	return nil
}
