package policy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/loader"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/tester"
	"github.com/open-policy-agent/opa/v1/topdown"

	"github.com/scopegate/scopegate/extauthz/denial"
	"github.com/scopegate/scopegate/internal/contract"
)

// Options configure an Engine.
type Options struct {
	// Path is a policy directory or an OPA bundle tarball; empty with FS set loads FS instead.
	Path string
	FS   fs.FS
	// Query is the decision's reference, e.g. data.scopegate.authz.decision.
	Query string
	// RunTests runs the policy's own tests (test_* rules) before a revision goes live.
	RunTests bool
	// Verification verifies a signed bundle (see Verification); nil refuses signed bundles.
	Verification *bundle.VerificationConfig
	EvalTimeout  time.Duration
	Logger       *slog.Logger
	Metrics      *Metrics
}

// Revision is one compiled policy version.
type Revision struct {
	ID       string    `json:"id"`
	Source   string    `json:"source"`
	LoadedAt time.Time `json:"loaded_at"`
	Tests    int       `json:"tests_passed"`
	// Reads lists the optional request fields the policy reads; the others are left out of
	// its input (see needs.go).
	Reads Fields `json:"reads"`
	pq    rego.PreparedEvalQuery
}

// Engine evaluates the revision in force and swaps in new ones.
type Engine struct {
	opts    Options
	current atomic.Pointer[Revision]
	reload  sync.Mutex // one compile at a time; readers never wait on it
	log     *slog.Logger

	mu      sync.Mutex
	changed chan struct{} // closed and replaced when a new revision goes live

	// rejected: the last reload was refused (guarded by reload), so a reload back to the
	// revision in force is worth saying: the operator fixed what was refused.
	rejected bool
}

// New compiles the first revision; a policy that does not compile or pass its tests fails
// start-up.
func New(ctx context.Context, o Options) (*Engine, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Query == "" {
		o.Query = "data.scopegate.authz.decision"
	}
	e := &Engine{opts: o, log: o.Logger, changed: make(chan struct{})}
	rev, err := e.compile(ctx)
	if err != nil {
		return nil, err
	}
	e.current.Store(rev)
	o.Metrics.loaded(rev, nil)
	return e, nil
}

// NewPending returns an engine with no revision yet, for a policy that arrives later (a
// bundle from a bundle server): until Install succeeds, Revision is nil and the caller must
// deny.
func NewPending(o Options) *Engine {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Query == "" {
		o.Query = "data.scopegate.authz.decision"
	}
	return &Engine{opts: o, log: o.Logger, changed: make(chan struct{})}
}

// Revision is the revision in force; nil only for a pending engine before its first Install.
func (e *Engine) Revision() *Revision { return e.current.Load() }

// Changed returns a channel closed when the next revision goes live (a reload that only
// recompiles the same revision ID does not count).
func (e *Engine) Changed() <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.changed
}

// signalChanged wakes every Changed waiter: a new revision is in force.
func (e *Engine) signalChanged() {
	e.mu.Lock()
	close(e.changed)
	e.changed = make(chan struct{})
	e.mu.Unlock()
}

// Install compiles b (read and verified by the caller) and puts it in force when it
// compiles, defines the query and passes its tests; on any error the revision in force stays
// and the load is counted as rejected.
func (e *Engine) Install(ctx context.Context, b *bundle.Bundle, source string) (*Revision, error) {
	e.reload.Lock()
	defer e.reload.Unlock()
	rev, err := e.compileBundle(ctx, b, source)
	e.opts.Metrics.loaded(rev, err)
	if err != nil {
		return nil, err
	}
	if old := e.current.Swap(rev); old == nil || old.ID != rev.ID {
		prev := ""
		if old != nil {
			prev = old.ID
		}
		e.log.Info("policy revision loaded", "revision", rev.ID, "previous", prev, "source", source, "tests_passed", rev.Tests)
		e.signalChanged()
	}
	return rev, nil
}

// Reload compiles the policy source again; on any error the revision in force stays.
func (e *Engine) Reload(ctx context.Context) (*Revision, error) {
	e.reload.Lock()
	defer e.reload.Unlock()
	rev, err := e.compile(ctx)
	e.opts.Metrics.loaded(rev, err)
	if err != nil {
		e.rejected = true
		e.log.Error("policy reload rejected; keeping the revision in force", "error", err, "revision", e.revisionID())
		return nil, err
	}
	old := e.current.Swap(rev)
	switch {
	case old == nil || old.ID != rev.ID:
		prev := ""
		if old != nil {
			prev = old.ID
		}
		e.log.Info("policy revision loaded", "revision", rev.ID, "previous", prev, "tests_passed", rev.Tests)
		e.signalChanged()
	case e.rejected:
		// Back to the revision in force (the refused change undone): nothing changes, but
		// the last word in the log must not be the rejection.
		e.log.Info("policy reloaded: the revision in force is unchanged", "revision", rev.ID, "tests_passed", rev.Tests)
	}
	e.rejected = false
	return rev, nil
}

// Rejected counts a revision refused before it could be compiled (a bundle that did not
// read or whose signature did not verify).
func (e *Engine) Rejected() { e.opts.Metrics.loaded(nil, errRejected) }

var errRejected = errors.New("rejected")

func (e *Engine) revisionID() string {
	if r := e.Revision(); r != nil {
		return r.ID
	}
	return ""
}

func (e *Engine) source() string {
	if e.opts.Path != "" {
		return e.opts.Path
	}
	return "built-in default policy"
}

// Load reads a policy directory or bundle (or the given FS) as an OPA bundle. A signed
// bundle is refused: LoadVerified verifies one.
func Load(path string, fsys fs.FS) (*bundle.Bundle, error) {
	return LoadVerified(path, fsys, nil)
}

// LoadVerified is Load with OPA's bundle verification: with vc, a bundle must be signed by
// its key (an unsigned one or a bad signature is refused); without, a signed one is refused
// with an error naming policy.signing.
func LoadVerified(path string, fsys fs.FS, vc *bundle.VerificationConfig) (*bundle.Bundle, error) {
	l := loader.NewFileLoader().WithBundleVerificationConfig(vc)
	onDisk := path != ""
	if !onDisk {
		path = "."
		l = l.WithFS(fsys)
	} else if _, err := os.Stat(path); err != nil {
		return nil, err
	}
	// A Kubernetes ConfigMap volume keeps its files in a timestamped directory behind the
	// ..data symlink, with symlinks to them at the top. OPA's loader walks real files only, so
	// it would find them under the timestamped name (data.json mounted at the wrong path, and
	// a revision ID that differs between pods): load the directory ..data points at instead,
	// and name each file by its path under the mount.
	//
	// A directory named through a symlink (git-sync's link, `policy.path: /srv/policies`
	// without a trailing "/") is loaded where the link leads: OPA's loader does not descend
	// into a symlink it is given. Files keep the configured name either way.
	src := path
	if st, err := os.Stat(path); onDisk && err == nil && st.IsDir() {
		if real, err := filepath.EvalSymlinks(path); err == nil && real != filepath.Clean(path) {
			src = real
		}
	}
	if real, err := filepath.EvalSymlinks(filepath.Join(src, "..data")); err == nil {
		if st, err := os.Stat(real); err == nil && st.IsDir() {
			src = real
		}
	}
	b, err := l.AsBundle(src)
	if err != nil {
		err = oneErrorPerPlace(err, src)
		if vc == nil && onDisk && signed(path) {
			return nil, fmt.Errorf("%s is a signed bundle: give the key that verifies it (authz: policy.signing with public_key_file, key_id, scope; "+
				"scopegate's commands: --verification-key, --key-id, --signing-scope, or --config with an authz config)", path)
		}
		return nil, err
	}
	if src != path {
		for i := range b.Modules {
			m := &b.Modules[i]
			if rel, err := filepath.Rel(src, m.Path); err == nil && filepath.IsLocal(rel) {
				m.Path = filepath.Join(path, rel)
				m.URL = m.Path
			}
		}
	}
	if len(b.Modules) == 0 {
		return nil, fmt.Errorf("%s: no .rego files", path)
	}
	return b, nil
}

// oneErrorPerPlace keeps, of OPA's parse errors at one place, only the most detailed: for a
// syntax error OPA's parser reports "unexpected eof token" and then the same message again
// with a hint, and both would be printed.
func oneErrorPerPlace(err error, path string) error {
	var errs ast.Errors
	if !errors.As(err, &errs) {
		return err
	}
	var kept ast.Errors
	for i, e := range errs {
		redundant := false
		for j, o := range errs {
			if i != j && samePlace(e, o) && strings.HasPrefix(o.Message, e.Message) && (len(o.Message) > len(e.Message) || j < i) {
				redundant = true
				break
			}
		}
		if !redundant {
			kept = append(kept, e)
		}
	}
	if len(kept) == len(errs) {
		return err
	}
	return fmt.Errorf("bundle %s: %w", path, kept)
}

func samePlace(a, b *ast.Error) bool {
	if a.Location == nil || b.Location == nil {
		return a.Location == b.Location
	}
	return a.Location.File == b.Location.File && a.Location.Row == b.Location.Row && a.Code == b.Code
}

func (e *Engine) compile(ctx context.Context) (*Revision, error) {
	src := e.source()
	b, err := LoadVerified(e.opts.Path, e.opts.FS, e.opts.Verification)
	if err != nil {
		return nil, fmt.Errorf("policy %s: %w", src, err)
	}
	return e.compileBundle(ctx, b, src)
}

func (e *Engine) compileBundle(ctx context.Context, b *bundle.Bundle, src string) (*Revision, error) {
	if len(b.Modules) == 0 {
		return nil, fmt.Errorf("policy %s: no .rego files", src)
	}
	var err error
	rev := &Revision{ID: revisionID(b), Source: src, LoadedAt: time.Now(), Reads: analyzeNeeds(b)}
	if e.opts.RunTests {
		n, err := RunTests(ctx, b)
		if err != nil {
			return nil, fmt.Errorf("policy %s: %w", src, err)
		}
		rev.Tests = n
	}
	rev.pq, err = rego.New(
		rego.Query(e.opts.Query),
		rego.ParsedBundle("policy", b),
		rego.StrictBuiltinErrors(true),
	).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("policy %s: %w", src, err)
	}
	// A query that names nothing the policy defines is a typo that would deny every request.
	if !definesQuery(b, e.opts.Query) {
		return nil, fmt.Errorf("policy %s: no rule defines %s", src, e.opts.Query)
	}
	return rev, nil
}

func definesQuery(b *bundle.Bundle, query string) bool {
	ref, err := ast.ParseRef(query)
	if err != nil {
		return false
	}
	for _, m := range b.Modules {
		for _, r := range m.Parsed.Rules {
			p := r.Ref().GroundPrefix()
			// The query names this rule, something inside it, or a package that holds it.
			if ref.HasPrefix(p) || p.HasPrefix(ref) {
				return true
			}
		}
	}
	return false
}

// revisionID is the bundle manifest's revision when set, else a content hash.
func revisionID(b *bundle.Bundle) string {
	if b.Manifest.Revision != "" {
		return b.Manifest.Revision
	}
	h := sha256.New()
	paths := make([]string, 0, len(b.Modules))
	raw := map[string][]byte{}
	for _, m := range b.Modules {
		paths = append(paths, m.Path)
		raw[m.Path] = m.Raw
	}
	sort.Strings(paths)
	for _, p := range paths {
		fmt.Fprintf(h, "%s\x00%d\x00", p, len(raw[p]))
		h.Write(raw[p])
	}
	data, _ := json.Marshal(b.Data) // map keys are sorted: stable
	h.Write(data)
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// RunTests runs the bundle's test_* rules with OPA's tester and returns how many passed,
// counted as `opa test` counts them (each case of a data-driven test is one); any failure or
// error is returned as an error naming the tests.
func RunTests(ctx context.Context, b *bundle.Bundle) (int, error) {
	results, err := TestResults(ctx, b)
	if err != nil {
		return 0, err
	}
	passed := 0
	var failed []string
	for _, r := range results {
		switch {
		case r.Skip:
		case r.Pass():
			passed += passedCases(r)
		default:
			desc := r.Package + "." + r.Name
			if r.Error != nil {
				desc += " (" + r.Error.Error() + ")"
			}
			failed = append(failed, desc)
		}
	}
	if len(failed) > 0 {
		return passed, fmt.Errorf("%d policy test(s) failed: %s", len(failed), strings.Join(failed, "; "))
	}
	return passed, nil
}

// passedCases is how many tests a passing result counts for: its leaf sub-results (the
// cases of a data-driven test), or 1.
func passedCases(r *tester.Result) int {
	n := 0
	for _, sr := range r.SubResults.Iter {
		if len(sr.SubResults) == 0 && !sr.Fail {
			n++
		}
	}
	if len(r.SubResults) == 0 {
		return 1
	}
	return n
}

// TestResults runs the bundle's tests and returns every result.
func TestResults(ctx context.Context, b *bundle.Bundle) ([]*tester.Result, error) {
	modules := make(map[string]*ast.Module, len(b.Modules))
	for _, m := range b.Modules {
		modules[m.Path] = m.Parsed
	}
	ch, err := tester.NewRunner().
		SetStore(inmem.NewFromObject(b.Data)).
		SetTimeout(30*time.Second).
		SetModules(modules).
		RunTests(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("policy tests: %w", err)
	}
	var out []*tester.Result
	for r := range ch {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Package+out[i].Name < out[j].Package+out[j].Name })
	return out, nil
}

// ErrorClasses are every class of evaluation failure (a bounded set: metric label values);
// the refusal's reason is contract.ReasonPolicyErrorPrefix and the class.
var ErrorClasses = []string{"undefined", "conflict", "timeout", "malformed", "multiple", "eval_error"}

// evalFailure is a policy runtime failure of class: a refusal (500 server_error, or
// policy.error_status), its cause kept for the log.
func evalFailure(class string, cause error) *denial.Denial {
	d := denial.New(denial.ServerError, contract.ReasonPolicyErrorPrefix+class, "the authorization policy failed")
	d.Err = cause
	return d
}

// ErrorClass is the class of an evaluation failure (one of ErrorClasses).
func ErrorClass(err error) string {
	var d *denial.Denial
	if errors.As(err, &d) && strings.HasPrefix(d.Reason, contract.ReasonPolicyErrorPrefix) {
		return strings.TrimPrefix(d.Reason, contract.ReasonPolicyErrorPrefix)
	}
	return "eval_error"
}

// Eval evaluates the decision for input under rev (the caller took it from Revision and
// built the input for its Reads). Any failure is a *denial.Denial (see ErrorClass), and the
// caller must deny.
func (e *Engine) Eval(ctx context.Context, rev *Revision, input ast.Value) (Decision, error) {
	return e.eval(ctx, rev, input)
}

func (e *Engine) eval(ctx context.Context, rev *Revision, input ast.Value, extra ...rego.EvalOption) (Decision, error) {
	// The time budget cancels evaluation through OPA's own cancel hook: a timer rather than
	// the goroutine per evaluation that a context deadline would cost.
	cancel := topdown.NewCancel()
	var timer *time.Timer
	if e.opts.EvalTimeout > 0 {
		timer = time.AfterFunc(e.opts.EvalTimeout, cancel.Cancel)
	}
	var (
		dec    Decision
		decErr error
		n      int
	)
	opts := append([]rego.EvalOption{
		rego.EvalParsedInput(input),
		rego.EvalExternalCancel(cancel),
		rego.EvalMetrics(noMetrics),
		rego.EvalGenerateJSON(func(t *ast.Term, _ *rego.EvalContext) (any, error) {
			// Read the result straight from the AST into the typed Decision: no detour
			// through map[string]any.
			n++
			dec, decErr = decodeDecision(t.Value)
			return nil, nil
		}),
	}, extra...)
	rs, err := rev.pq.Eval(ctx, opts...)
	if timer != nil {
		timer.Stop()
	}
	switch {
	case err != nil:
		return Decision{}, classify(err)
	case len(rs) == 0:
		return Decision{}, evalFailure("undefined", errors.New("the decision is undefined"))
	case len(rs) > 1 || n > 1:
		return Decision{}, evalFailure("multiple", errors.New("the query has several results"))
	case decErr != nil:
		return Decision{}, evalFailure("malformed", decErr)
	}
	return dec, nil
}

// noMetrics spares each evaluation OPA's per-query metrics allocation; we time Checks ourselves.
var noMetrics = metrics.NoOp()

func classify(err error) *denial.Denial {
	var te *topdown.Error
	if errors.As(err, &te) {
		switch te.Code {
		case topdown.CancelErr:
			return evalFailure("timeout", errors.New("evaluation exceeded its time budget"))
		case topdown.ConflictErr:
			return evalFailure("conflict", err)
		}
	}
	return evalFailure("eval_error", err)
}

// Explain evaluates like Eval and also returns the rules that produced a value, as
// "data.pkg.rule (file:line)", for `scopegate check`.
func (e *Engine) Explain(ctx context.Context, input ast.Value) (Decision, []string, error) {
	tracer := topdown.NewBufferTracer()
	d, err := e.eval(ctx, e.Revision(), input, rego.EvalQueryTracer(tracer))
	seen := map[string]bool{}
	var fired []string
	for _, ev := range *tracer {
		if ev.Op != topdown.ExitOp {
			continue
		}
		r, ok := ev.Node.(*ast.Rule)
		if !ok || r.Module == nil {
			continue
		}
		name := r.Module.Package.Path.String() + "." + r.Head.Ref().String()
		if r.Location != nil {
			name += fmt.Sprintf(" (%s:%d)", r.Location.File, r.Location.Row)
		}
		if !seen[name] {
			seen[name] = true
			fired = append(fired, name)
		}
	}
	return d, fired, err
}
