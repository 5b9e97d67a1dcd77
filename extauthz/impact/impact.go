// Package impact replays a decision log against a candidate policy: every logged input is
// evaluated again, and the decisions that would change ("flips") are grouped by route and
// reason. It is what a security team runs before rolling a policy change out.
package impact

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/util"

	"github.com/scopegate/scopegate/extauthz/policy"
	"github.com/scopegate/scopegate/internal/contract"
)

// Entry is a decision log line as impact reads it.
type Entry struct {
	DecisionID    string          `json:"decision_id"`
	RequestID     string          `json:"request_id"`
	Route         string          `json:"route"`
	Allow         bool            `json:"allow"`
	Shadow        bool            `json:"shadow"`
	Status        int             `json:"status"`
	Reason        string          `json:"reason"`
	MissingScopes []string        `json:"missing_scopes"`
	Input         json.RawMessage `json:"input"`
}

// id names the request in examples: Envoy's request id, else the decision id.
func (e *Entry) id() string {
	if e.RequestID != "" {
		return e.RequestID
	}
	return e.DecisionID
}

// Outcome is what Envoy would be told: the policy's decision as scopegate answers it.
type Outcome struct {
	Allow         bool     `json:"allow"`
	Status        int      `json:"status"`
	Reason        string   `json:"reason,omitempty"`
	MissingScopes []string `json:"missing_scopes,omitempty"`
}

func (o Outcome) String() string {
	if o.Allow {
		return "allow"
	}
	s := fmt.Sprintf("%d %s", o.Status, o.Reason)
	if len(o.MissingScopes) > 0 {
		s += " (missing " + strings.Join(o.MissingScopes, " ") + ")"
	}
	return s
}

// Logged is the outcome a line records. A shadow line was allowed, but the policy denied:
// its policy outcome is the denial.
func Logged(e *Entry) Outcome {
	if e.Allow && !e.Shadow {
		return Outcome{Allow: true, Status: 200}
	}
	return Outcome{Status: e.Status, Reason: e.Reason, MissingScopes: e.MissingScopes}
}

// Decided turns an evaluation into an outcome the way the Check path does.
func Decided(d policy.Decision, err error, errorStatus int) Outcome {
	if err != nil {
		return Outcome{Status: errorStatus, Reason: contract.ReasonPolicyErrorPrefix + policy.ErrorClass(err)}
	}
	if d.Allow {
		return Outcome{Allow: true, Status: 200}
	}
	o := Outcome{Status: d.Status, Reason: d.Reason, MissingScopes: d.MissingScopes}
	if o.Status == 0 {
		o.Status = 403
	}
	if o.Reason == "" {
		o.Reason = contract.ReasonPolicyDenied
	}
	if len(o.MissingScopes) > 0 {
		o.Status = 403
	}
	return o
}

// Flip kinds, in report order.
const (
	AllowToDeny   = "allow→deny"
	DenyToAllow   = "deny→allow"
	StatusChange  = "status"
	ReasonChange  = "reason"
	MissingChange = "missing_scopes"
)

var kindOrder = []string{AllowToDeny, DenyToAllow, StatusChange, ReasonChange, MissingChange}

func kind(before, after Outcome) string {
	switch {
	case before.Allow && !after.Allow:
		return AllowToDeny
	case !before.Allow && after.Allow:
		return DenyToAllow
	case before.Allow:
		return ""
	case before.Status != after.Status:
		return StatusChange
	case before.Reason != after.Reason:
		return ReasonChange
	case !slices.Equal(before.MissingScopes, after.MissingScopes):
		return MissingChange
	}
	return ""
}

// Group is the flips that share a kind, a route and the two outcomes.
type Group struct {
	Kind     string   `json:"kind"`
	Route    string   `json:"route"`
	Before   string   `json:"before"`
	After    string   `json:"after"`
	Count    int      `json:"count"`
	Examples []string `json:"examples"` // request ids (at most MaxExamples)
}

// MaxExamples bounds the request ids listed per group.
const MaxExamples = 3

// Report is the outcome of a replay.
type Report struct {
	Candidate string `json:"candidate"`
	Baseline  string `json:"baseline"` // a policy, or "decision log"
	Lines     int    `json:"lines"`
	Replayed  int    `json:"replayed"`
	Skipped   int    `json:"skipped_without_input"` // denied before the policy ran, or logged without include_input
	// NoPolicy counts lines decided while no policy was in force yet (503 no_policy, a
	// bundle not yet arrived): they carry an input, but no policy decided them.
	NoPolicy int `json:"skipped_no_policy"`
	// Incomplete: the log's last line is cut short (authz writes the log in the background
	// and flushes it every 200 ms: the rest was not on disk yet). It is not replayed.
	Incomplete bool    `json:"incomplete_last_line,omitempty"`
	Flips      int     `json:"flips"`
	Groups     []Group `json:"groups"`
}

// Options configure a replay.
type Options struct {
	Candidate *policy.Engine
	// Baseline, when set, decides the "before" side; otherwise the logged decisions do.
	Baseline    *policy.Engine
	ErrorStatus int // the status of a policy error (authz's policy.error_status)
	// Names shown in the report.
	CandidateName, BaselineName string
}

// Run replays every line of log.
func Run(ctx context.Context, log io.Reader, o Options) (*Report, error) {
	if o.ErrorStatus == 0 {
		o.ErrorStatus = 500
	}
	rep := &Report{Candidate: o.CandidateName, Baseline: o.BaselineName, Groups: []Group{}}
	if o.Baseline == nil {
		rep.Baseline = "decision log"
	}
	groups := map[[4]string]*Group{}
	sc := bufio.NewScanner(log)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	unterminated := false // the token just scanned ended at EOF without a newline
	sc.Split(func(data []byte, atEOF bool) (int, []byte, error) {
		adv, tok, err := bufio.ScanLines(data, atEOF)
		unterminated = atEOF && tok != nil && adv == len(data) && !bytes.HasSuffix(data, []byte("\n"))
		return adv, tok, err
	})
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var e Entry
		if err := json.Unmarshal(line, &e); err != nil {
			if unterminated {
				// The writer has not flushed the rest of this line yet.
				rep.Incomplete = true
				break
			}
			return nil, fmt.Errorf("decision log line %d: %w", n, err)
		}
		rep.Lines++
		if e.Reason == string(contract.ReasonNoPolicy) {
			rep.NoPolicy++
			continue
		}
		if len(e.Input) == 0 || string(e.Input) == "null" {
			rep.Skipped++
			continue
		}
		input, err := parseInput(e.Input)
		if err != nil {
			return nil, fmt.Errorf("decision log line %d: input: %w", n, err)
		}
		rep.Replayed++
		before := Logged(&e)
		if o.Baseline != nil {
			before = evaluate(ctx, o.Baseline, input, o.ErrorStatus)
		}
		after := evaluate(ctx, o.Candidate, input, o.ErrorStatus)
		k := kind(before, after)
		if k == "" {
			continue
		}
		rep.Flips++
		key := [4]string{k, e.Route, before.String(), after.String()}
		g := groups[key]
		if g == nil {
			g = &Group{Kind: k, Route: e.Route, Before: key[2], After: key[3]}
			groups[key] = g
		}
		g.Count++
		if len(g.Examples) < MaxExamples {
			g.Examples = append(g.Examples, e.id())
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("decision log: %w", err)
	}
	for _, g := range groups {
		rep.Groups = append(rep.Groups, *g)
	}
	slices.SortFunc(rep.Groups, func(a, b Group) int {
		if c := slices.Index(kindOrder, a.Kind) - slices.Index(kindOrder, b.Kind); c != 0 {
			return c
		}
		return strings.Compare(a.Route+"\x00"+a.Before+"\x00"+a.After, b.Route+"\x00"+b.Before+"\x00"+b.After)
	})
	return rep, nil
}

func parseInput(raw json.RawMessage) (ast.Value, error) {
	var v any
	if err := util.UnmarshalJSON(raw, &v); err != nil {
		return nil, err
	}
	return ast.InterfaceToValue(v)
}

func evaluate(ctx context.Context, e *policy.Engine, input ast.Value, errorStatus int) Outcome {
	d, err := e.Eval(ctx, e.Revision(), input)
	return Decided(d, err, errorStatus)
}

// WriteText writes the report for people: a summary, then one line per group.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "candidate %s against %s: %d decisions replayed, %d without input skipped", r.Candidate, r.Baseline, r.Replayed, r.Skipped)
	if r.NoPolicy > 0 {
		fmt.Fprintf(&b, ", %d decided before any policy was loaded (no_policy) skipped", r.NoPolicy)
	}
	b.WriteString("\n")
	if r.Incomplete {
		b.WriteString("the log's last line is incomplete and was not replayed: authz writes the decision log in the background (flushed every 200 ms); run impact again for it\n")
	}
	if r.Flips == 0 {
		b.WriteString("no decision flips\n")
	} else {
		fmt.Fprintf(&b, "%d decision(s) flip:\n", r.Flips)
	}
	for _, g := range r.Groups {
		fmt.Fprintf(&b, "  %-14s route %-14s %s → %s  ×%d  e.g. %s\n", g.Kind, g.Route, g.Before, g.After, g.Count, strings.Join(g.Examples, ", "))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON writes the report as one indented JSON document.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
