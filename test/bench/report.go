package main

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// result is one tool's measurement of one operation.
type result struct {
	tool      string
	m         measurement
	repoAdded int64 // bytes the operation added to the repository; -1 when not measured
}

// opReport holds every tool's result for one operation on one state of the dataset.
type opReport struct {
	title   string
	data    treeStats
	results []result
}

func (r *opReport) get(tool string) (result, bool) {
	for _, res := range r.results {
		if res.tool == tool {
			return res, true
		}
	}
	return result{}, false
}

// print writes r as a table.
func (r *opReport) print(w io.Writer) {
	fmt.Fprintf(w, "\n== %s: %s ==\n", r.title, r.data)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "tool\twall s\tMB/s\tfiles/s\tpeak RSS MiB\tCPU s\trepo +MiB\t")
	for _, res := range r.results {
		secs := res.m.wall.Seconds()
		added := "-"
		if res.repoAdded >= 0 {
			added = fmt.Sprintf("%.1f", float64(res.repoAdded)/mib)
		}
		fmt.Fprintf(tw, "%s\t%.2f\t%.1f\t%.0f\t%.1f\t%.2f\t%s\t\n", res.tool, secs,
			float64(r.data.bytes)/1e6/secs, float64(r.data.files)/secs,
			float64(res.m.maxRSSKiB)/kib, res.m.cpu.Seconds(), added)
	}
	tw.Flush()
}

// ratio is other's wall time divided by Ferry's for the operation: above 1 Ferry is faster.
func (r *opReport) ratio(other string) float64 {
	f, okF := r.get("ferry")
	o, okO := r.get(other)
	if !okF || !okO || f.m.wall <= 0 {
		return 0
	}
	return o.m.wall.Seconds() / f.m.wall.Seconds()
}

// runResults are the operations of one benchmark run.
type runResults struct {
	initial, noChange, changed, restore *opReport
}

// peakRSSKiB is the highest peak RSS of tool over all operations.
func (rs runResults) peakRSSKiB(tool string) int64 {
	var peak int64
	for _, op := range []*opReport{rs.initial, rs.noChange, rs.changed, rs.restore} {
		if res, ok := op.get(tool); ok {
			peak = max(peak, res.m.maxRSSKiB)
		}
	}
	return peak
}

// printTargets compares the run with Ferry's performance targets (docs/performance.md).
func (rs runResults) printTargets(w io.Writer) {
	check := func(ok bool) string {
		if ok {
			return "met"
		}
		return "MISSED"
	}
	ferryRSS, kopiaRSS := rs.peakRSSKiB("ferry"), rs.peakRSSKiB("kopia")
	fmt.Fprintln(w, "\ntargets (docs/performance.md):")
	rows := []struct {
		what string
		got  float64
		want float64
	}{
		{"initial backup vs kopia CLI", rs.initial.ratio("kopia"), 1.2},
		{"initial backup vs restic", rs.initial.ratio("restic"), 1.5},
		{"no-change backup vs kopia CLI", rs.noChange.ratio("kopia"), 1.0},
		{"restore vs kopia CLI", rs.restore.ratio("kopia"), 1.5},
	}
	for _, r := range rows {
		fmt.Fprintf(w, "  %-30s %.2fx (want >= %.2fx) %s\n", r.what, r.got, r.want, check(r.got >= r.want))
	}
	fmt.Fprintf(w, "  %-30s %.0f MiB vs %.0f MiB %s\n", "peak RSS below kopia CLI's",
		float64(ferryRSS)/kib, float64(kopiaRSS)/kib, check(ferryRSS < kopiaRSS))
}

// summary is the last line of the output, for scripts.
func (rs runResults) summary() string {
	return fmt.Sprintf("bench: ferry/kopia backup=%.2f incremental=%.2f restore=%.2f ferry/restic backup=%.2f restore=%.2f ferry_peak_rss_mib=%d",
		rs.initial.ratio("kopia"), rs.changed.ratio("kopia"), rs.restore.ratio("kopia"),
		rs.initial.ratio("restic"), rs.restore.ratio("restic"), (rs.peakRSSKiB("ferry")+kib/2)/kib)
}
