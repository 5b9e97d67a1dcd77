package load

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"math"
	"strings"
)

type series struct {
	label, color, dash string
	server, c          string
}

var chartSeries = []series{
	{"floor (no-op), warm", "#777777", "6,4", ServerFloor, CaseWarm},
	{"scopegate warm", "#1f77b4", "", ServerAuthz, CaseWarm},
	{"scopegate cold RS256", "#ff7f0e", "", ServerAuthz, CaseColdRS},
	{"scopegate cold ES256", "#2ca02c", "", ServerAuthz, CaseColdES},
	{"scopegate deny-heavy", "#9467bd", "", ServerAuthz, CaseDeny},
	{"default config warm", "#d62728", "2,2", ServerDefault, CaseWarm},
}

func esc(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

func (r *Report) stat(server, c string, conc int) (Stats, bool) {
	for _, s := range r.Summary {
		if s.Case == c && s.Concurrency == conc {
			switch server {
			case ServerFloor:
				return s.Floor, s.Floor.Requests > 0
			case ServerDefault:
				if s.Default == nil {
					return Stats{}, false
				}
				return *s.Default, true
			}
			return s.Scopegate, s.Scopegate.Requests > 0
		}
	}
	return Stats{}, false
}

// SVG draws throughput and p99 against concurrency (closed loop), and p99 against the
// offered rate (open loop), scopegate beside the floor.
func (r *Report) SVG() string {
	const (
		W, H                = 1440, 470
		pw, ph              = 380, 290
		top                 = 60
		leftA, leftB, leftC = 80, 560, 1040
		legendY             = top + ph + 55
		footerY             = H - 14
		tickFont            = `font-size="11"`
		ticks               = 5
	)
	concs := r.Settings.Concurrency
	xAt := func(left, i int) float64 {
		if len(concs) == 1 {
			return float64(left) + pw/2
		}
		return float64(left) + 20 + float64(i)*(pw-40)/float64(len(concs)-1)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif">`+"\n", W, H, W, H)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%d" y="24" font-size="16" font-weight="bold" text-anchor="middle">%s</text>`+"\n", W/2,
		esc("scopegate authz vs the no-op ext_authz floor (Envoy-shaped CheckRequests over gRPC)"))

	// Left: throughput, linear.
	maxRPS := 0.0
	for _, s := range r.Summary {
		maxRPS = max(maxRPS, s.Floor.RPS, s.Scopegate.RPS)
		if s.Default != nil {
			maxRPS = max(maxRPS, s.Default.RPS)
		}
	}
	yMax := niceCeil(maxRPS * 1.05)
	yRPS := func(v float64) float64 { return float64(top+ph) - v/yMax*ph }
	// Right: p99, log10.
	lo, hi := math.Inf(1), 0.0
	for _, se := range chartSeries {
		for _, c := range concs {
			if st, ok := r.stat(se.server, se.c, c); ok && st.P99us > 0 {
				lo, hi = min(lo, st.P99us), max(hi, st.P99us)
			}
		}
	}
	if hi == 0 {
		lo, hi = 1, 10
	}
	dLo, dHi := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
	if dHi == dLo {
		dHi++
	}
	yP99 := func(v float64) float64 {
		return float64(top+ph) - (math.Log10(v)-dLo)/(dHi-dLo)*ph
	}

	frame := func(left int, title, ylabel, xlabel string) {
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="13" font-weight="bold" text-anchor="middle">%s</text>`+"\n", left+pw/2, top-10, esc(title))
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#333"/>`+"\n", left, top, pw, ph)
		fmt.Fprintf(&b, `<text x="%d" y="%d" %s text-anchor="middle" transform="rotate(-90 %d %d)">%s</text>`+"\n",
			left-55, top+ph/2, tickFont, left-55, top+ph/2, esc(ylabel))
		fmt.Fprintf(&b, `<text x="%d" y="%d" %s text-anchor="middle">%s</text>`+"\n", left+pw/2, top+ph+34, tickFont, esc(xlabel))
	}
	panel := func(left int, title, ylabel string) {
		frame(left, title, ylabel, "concurrent workers (closed loop)")
		for i, c := range concs {
			x := xAt(left, i)
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>`+"\n", x, top, x, top+ph)
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" %s text-anchor="middle">%d</text>`+"\n", x, top+ph+16, tickFont, c)
		}
	}
	panel(leftA, "Throughput (req/s, mean of rounds)", "requests per second")
	for i := 0; i <= ticks; i++ {
		v := yMax * float64(i) / ticks
		y := yRPS(v)
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#eee"/>`+"\n", leftA, y, leftA+pw, y)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" %s text-anchor="end">%.0f</text>`+"\n", leftA-5, y+4, tickFont, v)
	}
	panel(leftB, "p99 latency (µs, log scale)", "p99 latency (µs)")
	for d := dLo; d <= dHi; d++ {
		v := math.Pow(10, d)
		y := yP99(v)
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#eee"/>`+"\n", leftB, y, leftB+pw, y)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" %s text-anchor="end">%.0f</text>`+"\n", leftB-5, y+4, tickFont, v)
	}
	oneMS := func(left int, yOf func(float64) float64, dLo, dHi float64) {
		if y := yOf(1000); 1000 >= math.Pow(10, dLo) && 1000 <= math.Pow(10, dHi) {
			fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#d62728" stroke-dasharray="2,3"/>`+"\n", left, y, left+pw, y)
			fmt.Fprintf(&b, `<text x="%d" y="%.1f" font-size="10" fill="#d62728" text-anchor="end">1 ms</text>`+"\n", left+pw-4, y-3)
		}
	}
	oneMS(leftB, yP99, dLo, dHi)
	r.openLoopPanel(&b, leftC, top, pw, ph, frame)

	for _, se := range chartSeries {
		for pi, left := range []int{leftA, leftB} {
			var pts []string
			for i, c := range concs {
				st, ok := r.stat(se.server, se.c, c)
				if !ok {
					continue
				}
				y := yRPS(st.RPS)
				if pi == 1 {
					if st.P99us <= 0 {
						continue
					}
					y = yP99(st.P99us)
				}
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", xAt(left, i), y))
			}
			se.line(&b, pts)
		}
	}
	// Legend.
	x := leftA
	for _, se := range chartSeries {
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"%s/>`+"\n", x, legendY, x+24, legendY, se.color, se.dashAttr())
		fmt.Fprintf(&b, `<text x="%d" y="%d" %s>%s</text>`+"\n", x+28, legendY+4, tickFont, esc(se.label))
		x += 36 + 7*len(se.label)
	}
	cores := "server and load generator share the cores"
	if r.Settings.Pinned {
		cores = "server pinned to CPU 1 (GOMAXPROCS=1), load generator to CPU 0"
	}
	foot := fmt.Sprintf("%d × %s, %s, loadavg %s → %s; %d round(s) alternating %s; %s",
		r.Machine.NProc, r.Machine.CPUModel, r.Machine.GoVersion, r.Machine.LoadAvgBefore, r.Machine.LoadAvgAfter, r.Settings.Rounds, strings.Join(r.Settings.Servers, "/"), cores)
	fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="10" fill="#555" text-anchor="middle">%s</text>`+"\n", W/2, footerY-14, esc(foot))
	fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="10" fill="#555" text-anchor="middle">%s</text>`+"\n", W/2, footerY, esc(r.Command))
	b.WriteString("</svg>\n")
	return b.String()
}

// openLoopPanel draws open-loop p99 against the offered rate, one line per server, on a
// log scale that always shows the 1 ms goal.
func (r *Report) openLoopPanel(b *strings.Builder, left, top, pw, ph int, frame func(left int, title, ylabel, xlabel string)) {
	const tickFont = `font-size="11"`
	frame(left, "Open loop: p99 latency (µs, log) vs offered load", "p99 latency (µs)", "offered req/s (Poisson arrivals; fractions of the floor's saturation)")
	xMax, lo, hi := 0.0, 1000.0, 1000.0
	for _, o := range r.OpenLoopSummary {
		xMax = max(xMax, o.TargetRPS)
		if o.P99us > 0 {
			lo, hi = min(lo, o.P99us), max(hi, o.P99us)
		}
	}
	step := niceCeil(xMax * 1.05 / 4)
	xMax = math.Max(step, math.Ceil(xMax*1.05/step)*step)
	dLo, dHi := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
	if dHi == dLo {
		dHi++
	}
	x := func(v float64) float64 { return float64(left) + v/xMax*float64(pw) }
	y := func(v float64) float64 { return float64(top+ph) - (math.Log10(v)-dLo)/(dHi-dLo)*float64(ph) }
	for v := 0.0; v <= xMax; v += step {
		fmt.Fprintf(b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#eee"/>`+"\n", x(v), top, x(v), top+ph)
		fmt.Fprintf(b, `<text x="%.1f" y="%d" %s text-anchor="middle">%.0f</text>`+"\n", x(v), top+ph+16, tickFont, v)
	}
	for d := dLo; d <= dHi; d++ {
		v := math.Pow(10, d)
		fmt.Fprintf(b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#eee"/>`+"\n", left, y(v), left+pw, y(v))
		fmt.Fprintf(b, `<text x="%d" y="%.1f" %s text-anchor="end">%.0f</text>`+"\n", left-5, y(v)+4, tickFont, v)
	}
	fmt.Fprintf(b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#d62728" stroke-dasharray="2,3"/>`+"\n", left, y(1000), left+pw, y(1000))
	fmt.Fprintf(b, `<text x="%d" y="%.1f" font-size="10" fill="#d62728" text-anchor="end">1 ms</text>`+"\n", left+pw-4, y(1000)-3)
	for _, se := range chartSeries {
		if se.c != CaseWarm {
			continue // the open loop sends the warm tokens
		}
		var pts []string
		for _, o := range r.OpenLoopSummary {
			if o.Server == se.server && o.P99us > 0 {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(o.TargetRPS), y(o.P99us)))
			}
		}
		se.line(b, pts)
	}
}

func (se series) dashAttr() string {
	if se.dash == "" {
		return ""
	}
	return fmt.Sprintf(` stroke-dasharray="%s"`, se.dash)
}

// line draws the series through pts ("x,y"), with a dot at each.
func (se series) line(b *strings.Builder, pts []string) {
	if len(pts) == 0 {
		return
	}
	fmt.Fprintf(b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"%s/>`+"\n", strings.Join(pts, " "), se.color, se.dashAttr())
	for _, p := range pts {
		xy := strings.Split(p, ",")
		fmt.Fprintf(b, `<circle cx="%s" cy="%s" r="3" fill="%s"/>`+"\n", xy[0], xy[1], se.color)
	}
}

// niceCeil rounds v up to 1, 2 or 5 × a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}
