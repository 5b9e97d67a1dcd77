package demoapi

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func do(t *testing.T, h http.Handler, method, path, body string, hdr map[string]string) (*httptest.ResponseRecorder, Response) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	for k, v := range hdr {
		req.Header.Add(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var resp Response
	if ct := rec.Header().Get("Content-Type"); ct == "application/json" {
		if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
			t.Fatalf("%s %s: body %q: %v", method, path, rec.Body, err)
		}
	}
	return rec, resp
}

func TestRoutes(t *testing.T) {
	fixed := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ident := map[string]string{
		"X-Scopegate-Subject":   "alice",
		"x-scopegate-client-id": "orders-cli",
		"X-Scopegate-Scopes":    "orders:read orders:write",
		"Authorization":         "Bearer secret-not-echoed",
		"X-Other":               "not echoed",
	}
	tests := []struct {
		name, method, path, body string
		wantCode                 int
		check                    func(t *testing.T, r Response)
	}{
		{"list seeded", "GET", "/orders", "", 200, func(t *testing.T, r Response) {
			if len(r.Orders) != 2 || r.Orders[0].ID != 1 || r.Orders[1].Owner != "bob" {
				t.Errorf("orders %+v", r.Orders)
			}
		}},
		{"get one", "GET", "/orders/1", "", 200, func(t *testing.T, r Response) {
			if r.Order == nil || r.Order.Item != "espresso beans 1kg" {
				t.Errorf("order %+v", r.Order)
			}
		}},
		{"get missing", "GET", "/orders/99", "", 404, nil},
		{"bad id", "GET", "/orders/abc", "", 400, nil},
		{"create", "POST", "/orders", `{"item":"grinder","quantity":1}`, 201, func(t *testing.T, r Response) {
			if r.Order == nil || r.Order.ID != 3 || r.Order.Owner != "alice" || r.Order.Status != "pending" || !r.Order.CreatedAt.Equal(fixed) {
				t.Errorf("created %+v", r.Order)
			}
		}},
		{"create invalid", "POST", "/orders", `{"item":"","quantity":0}`, 422, func(t *testing.T, r Response) {
			if !strings.Contains(r.Error, "item:") || !strings.Contains(r.Error, "quantity:") {
				t.Errorf("error %q", r.Error)
			}
		}},
		{"create unknown field", "POST", "/orders", `{"item":"x","quantity":1,"price":3}`, 400, nil},
		{"create not json", "POST", "/orders", `nope`, 400, nil},
		{"put replaces", "PUT", "/orders/2", `{"item":"frother v2","quantity":3}`, 200, func(t *testing.T, r Response) {
			if r.Order.Item != "frother v2" || r.Order.Quantity != 3 || r.Order.Status != "pending" {
				t.Errorf("replaced %+v", r.Order)
			}
		}},
		{"put needs all fields", "PUT", "/orders/2", `{"item":"x"}`, 422, nil},
		{"patch status", "PATCH", "/orders/1", `{"status":"delivered"}`, 200, func(t *testing.T, r Response) {
			if r.Order.Status != "delivered" || r.Order.Item != "espresso beans 1kg" {
				t.Errorf("patched %+v", r.Order)
			}
		}},
		{"patch bad status", "PATCH", "/orders/1", `{"status":"lost"}`, 422, nil},
		{"delete", "DELETE", "/orders/2", "", 200, nil},
		{"deleted is gone", "GET", "/orders/2", "", 404, nil},
		{"admin any method", "POST", "/admin/reindex", "", 200, func(t *testing.T, r Response) {
			if r.Admin == nil || r.Admin.Orders != 2 {
				t.Errorf("admin %+v", r.Admin)
			}
		}},
		{"unknown route", "GET", "/nope", "", 404, nil},
		{"wrong method", "DELETE", "/orders", "", 405, nil},
	}
	h := New(WithClock(func() time.Time { return fixed })).Handler()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, r := do(t, h, tt.method, tt.path+"?trace=1", tt.body, ident)
			if rec.Code != tt.wantCode {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.wantCode, rec.Body)
			}
			if tt.wantCode == 405 {
				if rec.Header().Get("Allow") == "" {
					t.Error("405 without an Allow header")
				}
				return
			}
			if r.Method != tt.method || r.Path != tt.path || r.Query != "trace=1" {
				t.Errorf("echo method %q path %q query %q", r.Method, r.Path, r.Query)
			}
			want := map[string]string{"x-scopegate-subject": "alice", "x-scopegate-client-id": "orders-cli", "x-scopegate-scopes": "orders:read orders:write"}
			if len(r.Identity) != len(want) {
				t.Errorf("identity %v, want exactly %v", r.Identity, want)
			}
			for k, v := range want {
				if r.Identity[k] != v {
					t.Errorf("identity[%s] = %q, want %q", k, r.Identity[k], v)
				}
			}
			if tt.check != nil {
				tt.check(t, r)
			}
		})
	}
}

func TestHealthzAndEmpty(t *testing.T) {
	h := New(WithoutSeed()).Handler()
	rec, _ := do(t, h, "GET", "/healthz", "", nil)
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"ok"`) {
		t.Fatalf("healthz %d %s", rec.Code, rec.Body)
	}
	_, r := do(t, h, "GET", "/orders", "", nil)
	if len(r.Orders) != 0 || r.Identity == nil {
		t.Fatalf("empty store: %+v", r)
	}
}

func TestConcurrentWrites(t *testing.T) {
	h := New(WithoutSeed()).Handler()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 20 {
				if rec, _ := do(t, h, "POST", "/orders", `{"item":"x","quantity":1}`, nil); rec.Code != 201 {
					t.Errorf("create: %d", rec.Code)
				}
				do(t, h, "GET", "/orders", "", nil)
			}
		})
	}
	wg.Wait()
	_, r := do(t, h, "GET", "/orders", "", nil)
	if len(r.Orders) != 160 || r.Orders[159].ID != 160 {
		t.Fatalf("%d orders, want 160 with distinct IDs", len(r.Orders))
	}
}

func TestServe(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- New().Serve(ctx, "127.0.0.1:0", slog.New(slog.DiscardHandler)) }()
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("Serve after cancel: %v", err)
	}
	if err := New().Serve(t.Context(), "not-an-address", slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("want a listen error")
	}
}
