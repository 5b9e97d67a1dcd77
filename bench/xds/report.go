package xds

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"time"

	"github.com/scopegate/scopegate/bench/hostinfo"
)

// Point is one server, mode and stream count, measured once.
type Point struct {
	Server  string `json:"server"`
	Mode    string `json:"mode"`
	Streams int    `json:"streams"`
	Round   int    `json:"round"`
	// IdleRSS is the server's RSS with its config and no stream; SyncedRSS with every
	// stream connected and holding the config.
	IdleRSS   int64 `json:"idle_rss"`
	SyncedRSS int64 `json:"synced_rss"`
	// ConnectCPU is the server's CPU for bringing the streams up (the initial fan-out).
	ConnectCPU time.Duration `json:"connect_cpu_ns"`
	Changes    []Change      `json:"changes"`
}

// Change is one route edit: from SIGHUP until the server is idle again with every ACK read.
type Change struct {
	CPU       time.Duration `json:"cpu_ns"`
	ToAll     time.Duration `json:"to_all_ns"` // SIGHUP until every stream holds the new version
	RSSBefore int64         `json:"rss_before"`
	Peak      int64         `json:"peak_rss"` // VmHWM, reset just before the change
	// Allocated is the bytes the server's Go heap allocated for the change (from its
	// /metrics; 0 for the floor).
	Allocated int64 `json:"allocated"`
}

// Report is a whole run.
type Report struct {
	Command          string           `json:"command"`
	Started          time.Time        `json:"started"`
	Finished         time.Time        `json:"finished"`
	Machine          hostinfo.Machine `json:"machine"`
	Routes           int              `json:"routes"`
	RouteConfigBytes int              `json:"route_config_bytes"`
	Changes          int              `json:"changes_per_point"`
	Servers          []Server         `json:"servers"`
	Points           []Point          `json:"points"`
	Summary          []Summary        `json:"summary"`
	Fits             []Fit            `json:"fits"`
}

// Summary pools every round of one server, mode and stream count.
type Summary struct {
	Server  string `json:"server"`
	Mode    string `json:"mode"`
	Streams int    `json:"streams"`
	// CPU per change: mean, min and max over every change of every round. The mean, as
	// CPU a change leaves for the next one's window is still counted once.
	CPU, CPUMin, CPUMax time.Duration
	// PerStream is CPU / Streams.
	PerStream time.Duration
	ToAll     time.Duration // median
	// RSSPerStream is (SyncedRSS - IdleRSS) / Streams, median over rounds.
	RSSPerStream int64
	IdleRSS      int64 // median
	SyncedRSS    int64 // median
	// PeakRatio is the largest peak RSS during a change over the RSS just before it.
	PeakRatio  float64
	ConnectCPU time.Duration // median
	// Allocated is the heap bytes allocated per change (mean).
	Allocated int64
}

// Fit is CPU per change = Fixed + PerStream × streams, least squares over the stream counts.
type Fit struct {
	Server    string        `json:"server"`
	Mode      string        `json:"mode"`
	Fixed     time.Duration `json:"fixed_ns"`
	PerStream time.Duration `json:"per_stream_ns"`
	// At10k is one replica serving 10,000 streams; At10kOf3 each of three replicas
	// serving a third of them (CPU per replica per change).
	At10k    time.Duration `json:"at_10k_ns"`
	At10kOf3 time.Duration `json:"at_10k_of_3_ns"`
	// RSSAt10k is idle RSS plus 10,000 times the largest measured RSS per stream.
	RSSAt10k int64 `json:"rss_at_10k"`
	// AllocPerStream is the slope of heap bytes allocated per change against streams.
	AllocPerStream int64 `json:"alloc_per_stream"`
}

func median[T int64 | time.Duration](v []T) T {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func mean(v []time.Duration) time.Duration {
	var sum time.Duration
	for _, x := range v {
		sum += x
	}
	return sum / time.Duration(len(v))
}

func summarize(points []Point) []Summary {
	type key struct {
		server, mode string
		streams      int
	}
	order, groups := groupBy(points, func(p Point) key { return key{p.Server, p.Mode, p.Streams} })
	var out []Summary
	for _, k := range order {
		ps := groups[k]
		s := Summary{Server: k.server, Mode: k.mode, Streams: k.streams}
		var cpu, toAll, connect []time.Duration
		var allocs int64
		var perStream, idle, synced []int64
		for _, p := range ps {
			for _, c := range p.Changes {
				cpu = append(cpu, c.CPU)
				toAll = append(toAll, c.ToAll)
				allocs += c.Allocated
				if c.RSSBefore > 0 {
					s.PeakRatio = max(s.PeakRatio, float64(c.Peak)/float64(c.RSSBefore))
				}
			}
			connect = append(connect, p.ConnectCPU)
			perStream = append(perStream, (p.SyncedRSS-p.IdleRSS)/int64(p.Streams))
			idle = append(idle, p.IdleRSS)
			synced = append(synced, p.SyncedRSS)
		}
		if len(cpu) == 0 {
			continue
		}
		s.CPU, s.CPUMin, s.CPUMax = mean(cpu), slices.Min(cpu), slices.Max(cpu)
		s.Allocated = allocs / int64(len(cpu))
		s.PerStream = s.CPU / time.Duration(k.streams)
		s.ToAll, s.ConnectCPU = median(toAll), median(connect)
		s.RSSPerStream, s.IdleRSS, s.SyncedRSS = median(perStream), median(idle), median(synced)
		out = append(out, s)
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Mode != b.Mode {
			return a.Mode > b.Mode // sotw first
		}
		if a.Streams != b.Streams {
			return a.Streams < b.Streams
		}
		return false
	})
	return out
}

// groupBy groups xs by keyOf, keeping the order in which each key first appears.
func groupBy[K comparable, V any](xs []V, keyOf func(V) K) (order []K, groups map[K][]V) {
	groups = map[K][]V{}
	for _, x := range xs {
		k := keyOf(x)
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], x)
	}
	return order, groups
}

func fits(sums []Summary) []Fit {
	type key struct{ server, mode string }
	order, groups := groupBy(sums, func(s Summary) key { return key{s.Server, s.Mode} })
	var out []Fit
	for _, k := range order {
		ss := groups[k]
		f := Fit{Server: k.server, Mode: k.mode}
		var sx, sy, sxx, sxy, sa, sxa float64
		n := float64(len(ss))
		var perStreamRSS, idle int64
		for _, s := range ss {
			x, y, a := float64(s.Streams), float64(s.CPU), float64(s.Allocated)
			sx, sy, sxx, sxy = sx+x, sy+y, sxx+x*x, sxy+x*y
			sa, sxa = sa+a, sxa+x*a
			perStreamRSS = max(perStreamRSS, s.RSSPerStream)
			idle = max(idle, s.IdleRSS)
		}
		if d := n*sxx - sx*sx; len(ss) >= 2 && d != 0 {
			b := (n*sxy - sx*sy) / d
			a := (sy - b*sx) / n
			f.Fixed, f.PerStream = time.Duration(a), time.Duration(b)
			f.AllocPerStream = int64((n*sxa - sx*sa) / d)
		} else {
			f.PerStream = time.Duration(sy / sx)
			f.AllocPerStream = int64(sa / sx)
		}
		f.At10k = f.Fixed + 10000*f.PerStream
		f.At10kOf3 = f.Fixed + 3334*f.PerStream
		f.RSSAt10k = idle + 10000*perStreamRSS
		out = append(out, f)
	}
	return out
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/1e6) }
func us(d time.Duration) string { return fmt.Sprintf("%.0f", float64(d)/1e3) }
func mb(b int64) string         { return fmt.Sprintf("%.0f", float64(b)/(1<<20)) }
func kb(b int64) string         { return fmt.Sprintf("%.0f", float64(b)/(1<<10)) }

// Markdown writes the tables docs/benchmarks.md shows.
func (r *Report) Markdown(w io.Writer) {
	fmt.Fprintf(w, "Routes: %d (RouteConfiguration %s KiB encoded); %d changes per point; load average %s before, %s after; %d CPUs (%s), %s.\n\n",
		r.Routes, kb(int64(r.RouteConfigBytes)), r.Changes, r.Machine.LoadAvgBefore, r.Machine.LoadAvgAfter, r.Machine.NProc, r.Machine.CPUModel, r.Machine.GoVersion)
	fmt.Fprintln(w, "| mode | streams | server | CPU per change, ms: mean (min–max) | µs per stream | all streams updated, ms | heap allocated per change, MB | RSS idle / synced, MB | RSS per stream, KB | peak RSS during a change / before | CPU to connect all, ms |")
	fmt.Fprintln(w, "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, s := range r.Summary {
		fmt.Fprintf(w, "| %s | %d | %s | %s (%s–%s) | %s | %s | %.1f | %s / %s | %s | %.2f | %s |\n",
			s.Mode, s.Streams, s.Server, ms(s.CPU), ms(s.CPUMin), ms(s.CPUMax), us(s.PerStream), ms(s.ToAll), float64(s.Allocated)/(1<<20),
			mb(s.IdleRSS), mb(s.SyncedRSS), kb(s.RSSPerStream), s.PeakRatio, ms(s.ConnectCPU))
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| mode | server | fixed CPU per change, ms | CPU per stream, µs | heap allocated per stream, KB | 10,000 streams, one replica: CPU per change, s | three replicas: CPU per replica per change, s | RSS at 10,000 streams, MB |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|---:|")
	for _, f := range r.Fits {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %.2f | %.2f | %s |\n", f.Mode, f.Server, ms(f.Fixed), us(f.PerStream), kb(f.AllocPerStream),
			f.At10k.Seconds(), f.At10kOf3.Seconds(), mb(f.RSSAt10k))
	}
}
