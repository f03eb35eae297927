package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/ferry-backup/ferry/api/shared"
)

// TestLineDisplay feeds the display without a terminal readings a poll apart, on a fake clock:
// one line per change, at most one per volume per second, the last state always, then the summary.
func TestLineDisplay(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(started.Time)
	var out bytes.Buffer
	d := newLineDisplay(&out, clk)
	vol := func(phase string, done int64) volume {
		return volume{Kind: "PodVolumeBackup", Name: "b-web-0", Path: pathFileSystem, Namespace: "app", Pod: "web-0", Vol: "data",
			Node: "node-1", Phase: phase, Start: at(0), Progress: shared.DataMoveOperationProgress{TotalBytes: 100 * mib, BytesDone: done * mib}}
	}
	op := func(phase string, vols ...volume) operation {
		return operation{Kind: "backup", Name: "b", Phase: phase, Start: at(0), Volumes: vols}
	}
	steps := []struct {
		after time.Duration
		op    operation
		lines []string // the lines this reading adds
	}{
		{0, op("", vol("Accepted", 0)), []string{"backup b: New", "  app/web-0:data (file system, node-1): waiting (Accepted)"}},
		{300 * time.Millisecond, op("InProgress", vol("Accepted", 0)), []string{"backup b: InProgress"}},
		{300 * time.Millisecond, op("InProgress", vol("InProgress", 10)), nil}, // a change within the second: held back
		{400 * time.Millisecond, op("InProgress", vol("InProgress", 20)),
			[]string{"  app/web-0:data (file system, node-1): uploading 20.0 MiB of 100.0 MiB (20%), 20.0 MiB/s, ETA 4s"}},
		{time.Second, op("InProgress", vol("InProgress", 20)), nil}, // nothing changed
		{time.Second, op("InProgress", vol("InProgress", 60)),
			[]string{"  app/web-0:data (file system, node-1): uploading 60.0 MiB of 100.0 MiB (60%), 20.0 MiB/s, ETA 2s"}},
	}
	for i, s := range steps {
		clk.SetTime(clk.Now().Add(s.after))
		before := out.Len()
		d.Update(s.op)
		got := strings.Split(strings.TrimSuffix(out.String()[before:], "\n"), "\n")
		if len(s.lines) == 0 && out.Len() == before {
			continue
		}
		if strings.Join(got, "\n") != strings.Join(s.lines, "\n") {
			t.Fatalf("step %d printed\n%q\nwant\n%q", i, got, s.lines)
		}
	}
	// The end comes within the second of the last line: printed all the same, then the summary.
	clk.SetTime(clk.Now().Add(200 * time.Millisecond))
	final := op("Completed", vol("Completed", 100))
	final.End, final.Volumes[0].End = at(5), at(4)
	before := out.Len()
	d.Finish(final)
	want := "backup b: Completed\n" +
		"  app/web-0:data (file system, node-1): completed 100.0 MiB in 4s\n" +
		"Backup b Completed: 1 volumes (1 completed, 0 failed), 100.0 MiB of 100.0 MiB in 5s\n"
	if got := out.String()[before:]; got != want {
		t.Fatalf("finish printed\n%s\nwant\n%s", got, want)
	}
}

// TestETA covers the figures the displays compute.
func TestETA(t *testing.T) {
	if d, ok := eta(25*mib, 100*mib, 5*mib); !ok || d != 15*time.Second {
		t.Errorf("eta = %v %v", d, ok)
	}
	if _, ok := eta(100, 100, 5*mib); ok {
		t.Error("an ETA once every byte is done")
	}
	if _, ok := eta(10, 100, 0); ok {
		t.Error("an ETA without a rate")
	}
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1536: "1.5 KiB", 5 * mib: "5.0 MiB", 3 << 40: "3.0 TiB"} {
		if got := byteSize(n); got != want {
			t.Errorf("byteSize(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestLineDisplayStages shows the stage the node reports, "~" before an estimated total, what a
// backup did with its bytes (hashed, unchanged, uploaded), and no total nor ETA while scanning.
func TestLineDisplayStages(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(started.Time)
	var out bytes.Buffer
	d := newLineDisplay(&out, clk)
	yes := true
	for _, s := range []struct {
		p    shared.DataMoveOperationProgress
		want string
	}{
		{shared.DataMoveOperationProgress{Stage: shared.ProgressStageScanning, BytesDone: 10 * mib, TotalBytes: 10 * mib, TotalFiles: 3, FilesDone: 3,
			BytesHashed: 10 * mib, BytesPerSecond: 5 * mib},
			"scanning 10.0 MiB so far, total not known yet (10.0 MiB hashed), 5.0 MiB/s"},
		{shared.DataMoveOperationProgress{Stage: shared.ProgressStageUploading, Estimated: &yes, BytesDone: 60 * mib, TotalBytes: 100 * mib,
			TotalFiles: 10, FilesDone: 6, BytesHashed: 40 * mib, BytesCached: 20 * mib, IncrementalBytes: 12 * mib, BytesPerSecond: 20 * mib},
			"uploading 60.0 MiB of ~100.0 MiB (60%), 6/10 files (40.0 MiB hashed, 20.0 MiB unchanged, 12.0 MiB uploaded), 20.0 MiB/s, ETA 2s"},
		{shared.DataMoveOperationProgress{Stage: shared.ProgressStageFlushing, BytesDone: 100 * mib, TotalBytes: 100 * mib, BytesHashed: 80 * mib,
			BytesCached: 20 * mib, IncrementalBytes: 30 * mib},
			"flushing 100.0 MiB of 100.0 MiB (100%) (80.0 MiB hashed, 20.0 MiB unchanged, 30.0 MiB uploaded), 33.3 MiB/s"},
	} {
		clk.SetTime(clk.Now().Add(time.Second))
		v := volume{Kind: "PodVolumeBackup", Name: "b-web-0", Path: pathFileSystem, Namespace: "app", Pod: "web-0", Vol: "data",
			Node: "node-1", Phase: "InProgress", Start: at(0), Progress: s.p}
		before := out.Len()
		d.Update(operation{Kind: "backup", Name: "b", Phase: "InProgress", Start: at(0), Volumes: []volume{v}})
		if got := out.String()[before:]; !strings.Contains(got, "  app/web-0:data (file system, node-1): "+s.want+"\n") {
			t.Errorf("printed\n%s\nwant the line\n%s", got, s.want)
		}
	}
}
