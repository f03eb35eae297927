package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// The operations the benchmark times.
const (
	opBackupInitial  = "initial backup"
	opBackupNoChange = "no-change backup"
	opBackupChanged  = "1%-change backup"
	opRestoreTree    = "restore"
)

// series is one tool's measurements of one operation, one per round.
type series struct {
	tool      string
	m         []measurement
	repoAdded []int64 // bytes the operation added to the repository; -1 when not measured
}

// walls returns the wall times in seconds, by round.
func (s *series) walls() []float64 {
	out := make([]float64, len(s.m))
	for i, m := range s.m {
		out[i] = m.wall.Seconds()
	}
	return out
}

func (s *series) rssMiB() []float64 {
	out := make([]float64, len(s.m))
	for i, m := range s.m {
		out[i] = float64(m.maxRSSKiB) / kib
	}
	return out
}

func (s *series) cpuSeconds() []float64 {
	out := make([]float64, len(s.m))
	for i, m := range s.m {
		out[i] = m.cpu.Seconds()
	}
	return out
}

// opReport holds every tool's series for one operation on one dataset.
type opReport struct {
	shape string // the scale suite's dataset shape; "" in the compare suite
	title string
	data  treeStats
	tools []*series
}

func (r *opReport) name() string {
	if r.shape == "" {
		return r.title
	}
	return r.shape + " " + r.title
}

func (r *opReport) get(tool string) *series {
	for _, s := range r.tools {
		if s.tool == tool {
			return s
		}
	}
	return nil
}

// ratios are other's wall time divided by Ferry's, round by round: above 1 Ferry is faster.
func (r *opReport) ratios(other string) []float64 {
	f, o := r.get(toolFerry), r.get(other)
	if f == nil || o == nil {
		return nil
	}
	var out []float64
	for i := range min(len(f.m), len(o.m)) {
		if f.m[i].wall > 0 {
			out = append(out, o.m[i].wall.Seconds()/f.m[i].wall.Seconds())
		}
	}
	return out
}

// medianRatio is the ratio of the two tools' median wall times.
func (r *opReport) medianRatio(other string) float64 {
	f, o := r.get(toolFerry), r.get(other)
	if f == nil || o == nil {
		return 0
	}
	fm := median(f.walls())
	if fm <= 0 {
		return 0
	}
	return median(o.walls()) / fm
}

// runResults are all operations of one benchmark run.
type runResults struct {
	suite  string
	scale  string
	factor float64
	rounds int
	tools  []string
	// memoryMiB is -memory-limit (0: none).
	memoryMiB int64
	ops       []*opReport
}

// add records one measurement; the first round fixes the operation's dataset statistics.
func (rs *runResults) add(shape, title string, data treeStats, tool string, round int, m measurement, repoAdded int64) {
	var op *opReport
	for _, o := range rs.ops {
		if o.shape == shape && o.title == title {
			op = o
		}
	}
	if op == nil {
		op = &opReport{shape: shape, title: title, data: data}
		rs.ops = append(rs.ops, op)
	}
	s := op.get(tool)
	if s == nil {
		s = &series{tool: tool}
		op.tools = append(op.tools, s)
		// Keep the tools in the order of the first round, whatever order later rounds add them in.
		slices.SortStableFunc(op.tools, func(a, b *series) int {
			return slices.Index(rs.tools, a.tool) - slices.Index(rs.tools, b.tool)
		})
	}
	for len(s.m) <= round {
		s.m = append(s.m, measurement{})
		s.repoAdded = append(s.repoAdded, -1)
	}
	s.m[round], s.repoAdded[round] = m, repoAdded
}

func (rs *runResults) op(shape, title string) *opReport {
	for _, o := range rs.ops {
		if o.shape == shape && o.title == title {
			return o
		}
	}
	return &opReport{shape: shape, title: title}
}

// print writes one table per operation: medians with the range over the rounds, and each other
// tool's wall time divided by Ferry's, round by round.
func (rs *runResults) print(w io.Writer) {
	for _, op := range rs.ops {
		fmt.Fprintf(w, "\n== %s: %s; %d rounds, median (min–max) ==\n", op.name(), op.data, rs.rounds)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "tool\twall s\tMB/s\tfiles/s\tpeak RSS MiB\tCPU s\trepo +MiB\t÷ ferry, by round\t")
		for _, s := range op.tools {
			walls := s.walls()
			med := median(walls)
			added := "-"
			if a := s.repoAdded[0]; a >= 0 {
				added = fmt.Sprintf("%.1f", float64(a)/mib)
			}
			by := "-"
			if s.tool != toolFerry {
				by = joinFloats(op.ratios(s.tool), "%.2f")
			}
			fmt.Fprintf(tw, "%s\t%.2f (%.2f–%.2f)\t%.1f\t%.0f\t%.0f (%.0f–%.0f)\t%.2f\t%s\t%s\t\n", s.tool,
				med, slices.Min(walls), slices.Max(walls),
				float64(op.data.bytes)/1e6/med, float64(op.data.files)/med,
				median(s.rssMiB()), slices.Min(s.rssMiB()), slices.Max(s.rssMiB()),
				median(s.cpuSeconds()), added, by)
		}
		tw.Flush()
	}
}

// peakRSSMiB is the highest median peak RSS of tool over all operations.
func (rs *runResults) peakRSSMiB(tool string) float64 {
	var peak float64
	for _, op := range rs.ops {
		if s := op.get(tool); s != nil {
			peak = max(peak, median(s.rssMiB()))
		}
	}
	return peak
}

// printTargets compares the compare suite's medians with Ferry's targets (docs/performance.md).
func (rs *runResults) printTargets(w io.Writer) {
	check := func(ok bool) string {
		if ok {
			return "met"
		}
		return "MISSED"
	}
	fmt.Fprintln(w, "\ntargets (docs/performance.md), on medians:")
	rows := []struct {
		what      string
		op, other string
		want      float64
	}{
		{"initial backup vs kopia CLI", opBackupInitial, toolKopia, 1.2},
		{"initial backup vs restic", opBackupInitial, toolRestic, 1.5},
		{"no-change backup vs kopia CLI", opBackupNoChange, toolKopia, 1.0},
		{"restore vs kopia CLI", opRestoreTree, toolKopia, 1.5},
		{"restore within 1.6x of tar -x", opRestoreTree, toolTar, 1 / 1.6},
	}
	for _, r := range rows {
		op := rs.op("", r.op)
		if op.get(r.other) == nil || op.get(toolFerry) == nil {
			continue
		}
		got := op.medianRatio(r.other)
		fmt.Fprintf(w, "  %-30s %.2fx (want >= %.2fx) %s\n", r.what, got, r.want, check(got >= r.want))
	}
	if slices.Contains(rs.tools, toolKopia) {
		f, k := rs.peakRSSMiB(toolFerry), rs.peakRSSMiB(toolKopia)
		fmt.Fprintf(w, "  %-30s %.0f MiB vs %.0f MiB %s\n", "peak RSS below kopia CLI's", f, k, check(f < k))
	}
}

// jsonSeries is one tool's operation in the summary line.
type jsonSeries struct {
	WallS   []float64 `json:"wall_s"`
	MedianS float64   `json:"median_s"`
	MinS    float64   `json:"min_s"`
	MaxS    float64   `json:"max_s"`
	RSSMiB  []float64 `json:"rss_mib"`
	CPUS    []float64 `json:"cpu_s"`
	// VsFerry is this tool's wall time divided by Ferry's, by round.
	VsFerry []float64 `json:"vs_ferry,omitempty"`
}

type jsonOp struct {
	Shape string                `json:"shape,omitempty"`
	Op    string                `json:"op"`
	Files int                   `json:"files"`
	Dirs  int                   `json:"dirs"`
	Bytes int64                 `json:"bytes"`
	Tools map[string]jsonSeries `json:"tools"`
}

type jsonSummary struct {
	Bench      string   `json:"bench"`
	Suite      string   `json:"suite"`
	Scale      string   `json:"scale,omitempty"`
	Factor     float64  `json:"factor,omitempty"`
	Rounds     int      `json:"rounds"`
	GOMAXPROCS int      `json:"gomaxprocs"`
	MemoryMiB  int64    `json:"memory_limit_mib,omitempty"`
	Date       string   `json:"date"`
	Tools      []string `json:"tools"`
	Ops        []jsonOp `json:"ops"`
}

// summary is the last line of the output, for scripts: one JSON object.
func (rs *runResults) summary() (string, error) {
	s := jsonSummary{Bench: "ferry", Suite: rs.suite, Rounds: rs.rounds, GOMAXPROCS: gomaxprocs(), MemoryMiB: rs.memoryMiB,
		Date: time.Now().UTC().Format(time.DateOnly), Tools: rs.tools}
	if rs.suite == suiteScale {
		s.Factor = rs.factor
	} else {
		s.Scale = rs.scale
	}
	for _, op := range rs.ops {
		jo := jsonOp{Shape: op.shape, Op: op.title, Files: op.data.files, Dirs: op.data.dirs, Bytes: op.data.bytes,
			Tools: map[string]jsonSeries{}}
		for _, t := range op.tools {
			walls := t.walls()
			js := jsonSeries{WallS: round3(walls), MedianS: round3([]float64{median(walls)})[0],
				MinS: round3([]float64{slices.Min(walls)})[0], MaxS: round3([]float64{slices.Max(walls)})[0], RSSMiB: round3(t.rssMiB()), CPUS: round3(t.cpuSeconds())}
			if t.tool != toolFerry {
				js.VsFerry = round3(op.ratios(t.tool))
			}
			jo.Tools[t.tool] = js
		}
		s.Ops = append(s.Ops, jo)
	}
	b, err := json.Marshal(s)
	if err != nil {
		return "", fmt.Errorf("encode the summary: %w", err)
	}
	return string(b), nil
}

// median returns the median of v (the mean of the middle two for an even count); 0 for none.
func median(v []float64) float64 {
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

func round3(v []float64) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = math.Round(x*1000) / 1000
	}
	return out
}

func joinFloats(v []float64, format string) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = fmt.Sprintf(format, x)
	}
	return strings.Join(parts, " ")
}

func gomaxprocs() int { return runtime.GOMAXPROCS(0) }
