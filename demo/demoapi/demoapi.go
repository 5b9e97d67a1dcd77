// Package demoapi is the demo's upstream: a small orders API that answers every request with
// JSON echoing the method, the path and the x-scopegate-* identity headers the gate passed on.
package demoapi

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/scopegate/scopegate/internal/bind"
)

// IdentityHeaderPrefix marks the headers scopegate authz adds for the upstream.
const IdentityHeaderPrefix = "x-scopegate-"

const maxBody = 64 << 10

// Order is one order in the in-memory store.
type Order struct {
	ID        int       `json:"id"`
	Item      string    `json:"item"`
	Quantity  int       `json:"quantity"`
	Status    string    `json:"status"`
	Owner     string    `json:"owner,omitempty"` // the x-scopegate-subject that created it
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// orderInput is the body of POST, PUT and PATCH; PATCH leaves nil fields alone.
type orderInput struct {
	Item     *string `json:"item"`
	Quantity *int    `json:"quantity"`
	Status   *string `json:"status"`
}

var statuses = []string{"pending", "shipped", "delivered", "cancelled"}

// Response is every answer's body.
type Response struct {
	Method   string            `json:"method"`
	Path     string            `json:"path"`
	Query    string            `json:"query,omitempty"`
	Identity map[string]string `json:"identity"` // every x-scopegate-* header received
	Order    *Order            `json:"order,omitempty"`
	Orders   []Order           `json:"orders,omitempty"`
	Admin    *AdminInfo        `json:"admin,omitempty"`
	Error    string            `json:"error,omitempty"`
}

// AdminInfo is what the /admin/ routes answer with.
type AdminInfo struct {
	Orders  int    `json:"orders"`
	Started string `json:"started"`
}

// API is the demo API with its store.
type API struct {
	mu      sync.Mutex
	orders  map[int]*Order
	nextID  int
	now     func() time.Time
	started time.Time
	mux     *http.ServeMux
}

// Option configures New.
type Option func(*API)

// WithClock replaces time.Now.
func WithClock(now func() time.Time) Option { return func(a *API) { a.now = now } }

// WithoutSeed starts with an empty store (by default two sample orders exist).
func WithoutSeed() Option { return func(a *API) { a.orders = map[int]*Order{} } }

// New builds the API.
func New(opts ...Option) *API {
	a := &API{now: time.Now, nextID: 1}
	for _, o := range opts {
		o(a)
	}
	a.started = a.now()
	if a.orders == nil {
		a.orders = map[int]*Order{}
		a.add(Order{Item: "espresso beans 1kg", Quantity: 2, Status: "shipped", Owner: "alice"})
		a.add(Order{Item: "milk frother", Quantity: 1, Status: "pending", Owner: "bob"})
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"ok"}`+"\n")
	})
	mux.HandleFunc("GET /orders", a.list)
	mux.HandleFunc("POST /orders", a.create)
	mux.HandleFunc("GET /orders/{id}", a.get)
	mux.HandleFunc("PUT /orders/{id}", a.replace)
	mux.HandleFunc("PATCH /orders/{id}", a.patch)
	mux.HandleFunc("DELETE /orders/{id}", a.delete)
	mux.HandleFunc("/orders", a.methodNotAllowed("GET, HEAD, POST"))
	mux.HandleFunc("/orders/{id}", a.methodNotAllowed("GET, HEAD, PUT, PATCH, DELETE"))
	mux.HandleFunc("/admin/", a.admin)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		a.reply(w, r, http.StatusNotFound, Response{Error: "no such route"})
	})
	a.mux = mux
	return a
}

// Handler serves the API. Wrong methods on known routes get 405 with an Allow header.
func (a *API) Handler() http.Handler { return a.mux }

func (a *API) methodNotAllowed(allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		a.fail(w, r, http.StatusMethodNotAllowed, "method %s not allowed: use %s", r.Method, allow)
	}
}

func (a *API) add(o Order) *Order {
	now := a.now().UTC()
	o.ID, o.CreatedAt, o.UpdatedAt = a.nextID, now, now
	a.nextID++
	a.orders[o.ID] = &o
	return &o
}

// identity collects every x-scopegate-* header (names lowercased, repeated values joined).
func identity(h http.Header) map[string]string {
	out := map[string]string{}
	for name, vals := range h {
		if l := strings.ToLower(name); strings.HasPrefix(l, IdentityHeaderPrefix) {
			out[l] = strings.Join(vals, ", ")
		}
	}
	return out
}

func (a *API) reply(w http.ResponseWriter, r *http.Request, code int, body Response) {
	body.Method, body.Path, body.Query, body.Identity = r.Method, r.URL.Path, r.URL.RawQuery, identity(r.Header)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(body)
}

func (a *API) fail(w http.ResponseWriter, r *http.Request, code int, format string, args ...any) {
	a.reply(w, r, code, Response{Error: fmt.Sprintf(format, args...)})
}

func (a *API) list(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	orders := make([]Order, 0, len(a.orders))
	for _, o := range a.orders {
		orders = append(orders, *o)
	}
	a.mu.Unlock()
	slices.SortFunc(orders, func(x, y Order) int { return cmp.Compare(x.ID, y.ID) })
	a.reply(w, r, http.StatusOK, Response{Orders: orders})
}

func (a *API) orderID(w http.ResponseWriter, r *http.Request) (int, bool) {
	id, err := strconv.Atoi(r.PathValue("id"))
	if err != nil || id <= 0 {
		a.fail(w, r, http.StatusBadRequest, "order id %q: want a positive integer", r.PathValue("id"))
		return 0, false
	}
	return id, true
}

func (a *API) get(w http.ResponseWriter, r *http.Request) {
	id, ok := a.orderID(w, r)
	if !ok {
		return
	}
	a.answer(w, r, id, nil)
}

// decode reads a JSON order body; unknown fields are errors.
func (a *API) decode(w http.ResponseWriter, r *http.Request) (orderInput, bool) {
	var in orderInput
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		a.fail(w, r, http.StatusBadRequest, "body: %v", err)
		return in, false
	}
	if dec.More() {
		a.fail(w, r, http.StatusBadRequest, "body: more than one JSON value")
		return in, false
	}
	return in, true
}

// validate checks the fields that are set; full requires item and quantity.
func validate(in orderInput, full bool) error {
	var errs []error
	if in.Item == nil && full {
		errs = append(errs, errors.New("item: required"))
	} else if in.Item != nil && (strings.TrimSpace(*in.Item) == "" || len(*in.Item) > 200) {
		errs = append(errs, errors.New("item: 1 to 200 characters"))
	}
	if in.Quantity == nil && full {
		errs = append(errs, errors.New("quantity: required"))
	} else if in.Quantity != nil && (*in.Quantity < 1 || *in.Quantity > 1000) {
		errs = append(errs, errors.New("quantity: 1 to 1000"))
	}
	if in.Status != nil && !slices.Contains(statuses, *in.Status) {
		errs = append(errs, fmt.Errorf("status: %q is not one of %s", *in.Status, strings.Join(statuses, ", ")))
	}
	return errors.Join(errs...)
}

func (a *API) create(w http.ResponseWriter, r *http.Request) {
	in, ok := a.decode(w, r)
	if !ok {
		return
	}
	if err := validate(in, true); err != nil {
		a.fail(w, r, http.StatusUnprocessableEntity, "%v", err)
		return
	}
	o := Order{Item: *in.Item, Quantity: *in.Quantity, Status: "pending", Owner: r.Header.Get("x-scopegate-subject")}
	if in.Status != nil {
		o.Status = *in.Status
	}
	a.mu.Lock()
	c := *a.add(o)
	a.mu.Unlock()
	w.Header().Set("Location", fmt.Sprintf("/orders/%d", c.ID))
	a.reply(w, r, http.StatusCreated, Response{Order: &c})
}

func (a *API) replace(w http.ResponseWriter, r *http.Request) { a.update(w, r, true) }
func (a *API) patch(w http.ResponseWriter, r *http.Request)   { a.update(w, r, false) }

func (a *API) update(w http.ResponseWriter, r *http.Request, full bool) {
	id, ok := a.orderID(w, r)
	if !ok {
		return
	}
	in, ok := a.decode(w, r)
	if !ok {
		return
	}
	if err := validate(in, full); err != nil {
		a.fail(w, r, http.StatusUnprocessableEntity, "%v", err)
		return
	}
	a.answer(w, r, id, func(o *Order) {
		if in.Item != nil {
			o.Item = *in.Item
		}
		if in.Quantity != nil {
			o.Quantity = *in.Quantity
		}
		if in.Status != nil {
			o.Status = *in.Status
		} else if full {
			o.Status = "pending"
		}
		o.UpdatedAt = a.now().UTC()
	})
}

func (a *API) delete(w http.ResponseWriter, r *http.Request) {
	id, ok := a.orderID(w, r)
	if !ok {
		return
	}
	a.answer(w, r, id, func(*Order) { delete(a.orders, id) })
}

// answer applies change (nil: none) to order id under the lock and replies with the order
// as it then stands, or 404.
func (a *API) answer(w http.ResponseWriter, r *http.Request, id int, change func(o *Order)) {
	a.mu.Lock()
	o, found := a.orders[id]
	var c Order
	if found {
		if change != nil {
			change(o)
		}
		c = *o
	}
	a.mu.Unlock()
	if !found {
		a.fail(w, r, http.StatusNotFound, "order %d not found", id)
		return
	}
	a.reply(w, r, http.StatusOK, Response{Order: &c})
}

// admin answers any method under /admin/ with a summary: the gate decides who gets here.
func (a *API) admin(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	n := len(a.orders)
	a.mu.Unlock()
	a.reply(w, r, http.StatusOK, Response{Admin: &AdminInfo{Orders: n, Started: a.started.UTC().Format(time.RFC3339)}})
}

// Serve listens on addr until ctx is done, then shuts down gracefully.
func (a *API) Serve(ctx context.Context, addr string, log *slog.Logger) error {
	ln, err := bind.TCP(addr, "--listen")
	if err != nil {
		return err
	}
	log.Info("demo API listening", "addr", ln.Addr().String())
	srv := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err = <-errc:
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if serr := srv.Shutdown(sctx); serr != nil && err == nil {
		err = serr
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}
