package cluster

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferry-backup/ferry/api/shared"
	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/repository/repotest/faults3"
	"github.com/ferry-backup/ferry/test/harness"
)

// gaugeValues returns the values of the series of metric whose labels include all of labels
// (`name="x"` pairs), by their full label text.
func gaugeValues(text, metric string, labels ...string) map[string]float64 {
	out := map[string]float64{}
	for _, line := range strings.Split(text, "\n") {
		rest, ok := strings.CutPrefix(line, metric+"{")
		if !ok {
			continue
		}
		series, value, ok := strings.Cut(rest, "} ")
		matches := ok
		for _, l := range labels {
			matches = matches && strings.Contains(series, l)
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(value), 64); matches && err == nil {
			out[series] = v
		}
	}
	return out
}

// While a backup runs, the node-agent's metrics endpoint shows its progress — bytes and files
// done of an estimated total, hashed, uploaded, the stage — and the series go when it ends. Its
// status ends with the totals what was done, all of it hashed (no parent), stage Done.
func TestProgressGaugesDuringABackup(t *testing.T) {
	c := harness.New(t)
	bsl, proxy := c.CreateFaultyS3BSL("slow", "60s")
	node := c.StartNode("node-a")
	pod := c.CreatePod(node, c.Namespace("shop"), "web", harness.VolumeSpec{Name: "data", Claim: "web-data"})
	if err := harness.FillVolume(pod.Dirs["data"], 24, 64<<20, 41); err != nil {
		t.Fatal(err)
	}
	// Slow writes to the store keep the backup running long enough to be watched.
	proxy.Add(faults3.Fault{Kind: faults3.Delay, Method: http.MethodPut, KeyPrefix: "ferry/p", Delay: 1500 * time.Millisecond})
	pvb := c.BackupVolume(pod, "data", "gauged", func(p *velerov1.PodVolumeBackup) { p.Spec.BackupStorageLocation = bsl.Name })
	of := []string{`kind="PodVolumeBackup"`, `name="gauged"`}

	var seen string
	c.Eventually(2*time.Minute, func() (bool, string) {
		text, err := node.Metrics()
		if err != nil {
			return false, err.Error()
		}
		bytes := gaugeValues(text, "ferry_volume_progress_bytes", of...)
		files := gaugeValues(text, "ferry_volume_progress_files", of...)
		stages := gaugeValues(text, "ferry_volume_progress_stage", of...)
		var done, total, hashed, filesDone, filesTotal float64
		for series, v := range bytes {
			switch {
			case strings.Contains(series, `figure="done"`):
				done = v
			case strings.Contains(series, `figure="total"`):
				total = v
			case strings.Contains(series, `figure="hashed"`):
				hashed = v
			}
		}
		for series, v := range files {
			switch {
			case strings.Contains(series, `figure="done"`):
				filesDone = v
			case strings.Contains(series, `figure="total"`):
				filesTotal = v
			}
		}
		stage := ""
		for series, v := range stages {
			if v == 1 {
				stage = series
			}
		}
		seen = fmtFigures(done, total, hashed, filesDone, filesTotal, stage)
		if done > total || filesDone > filesTotal {
			t.Errorf("gauges show more done than the total: %s", seen)
		}
		return done > 0 && filesDone < filesTotal && hashed == done && stage != "", "progress gauges: " + seen
	})
	t.Logf("gauges while the backup ran: %s", seen)

	c.WaitPhase(pvb, velerov1.PodVolumePhaseCompleted, 3*time.Minute)
	p := pvb.Status.Progress
	// A symlink's target is hashed too: BytesHashed counts it, the files' total size does not.
	if p.Stage != shared.ProgressStageDone || p.TotalBytes < 60<<20 || p.BytesDone != p.TotalBytes || p.BytesHashed < p.TotalBytes ||
		p.FilesHashed != p.TotalFiles || p.FilesDone != p.TotalFiles || p.FilesCached != 0 || p.Estimated == nil || *p.Estimated || p.IncrementalBytes <= 0 {
		t.Errorf("final progress in the status: %+v", p)
	}
	c.Eventually(30*time.Second, func() (bool, string) {
		text, err := node.Metrics()
		if err != nil {
			return false, err.Error()
		}
		left := len(gaugeValues(text, "ferry_volume_progress_bytes", of...)) + len(gaugeValues(text, "ferry_volume_progress_stage", of...))
		return left == 0, strconv.Itoa(left) + " progress series left after the backup ended"
	})
}

func fmtFigures(done, total, hashed, filesDone, filesTotal float64, stage string) string {
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', 0, 64) }
	return "bytes " + f(done) + "/" + f(total) + " (hashed " + f(hashed) + "), files " + f(filesDone) + "/" + f(filesTotal) + ", stage " + stage
}
