package e2e

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	velerov2alpha1 "github.com/ferry-backup/ferry/api/v2alpha1"
)

// TestBenchDataMoverVsFileSystem is `make bench-datamover`: one claim of FERRY_BENCH_MIB MiB
// (default 1024) of fresh data per backup, backed up through the file-system path and through
// the data mover in interleaved rounds (A B, B A, A B), on the same real cluster. It prints, per
// path, the median and range of the time from the Backup's creation to Completed, and for the
// data mover the time from the DataUpload's creation to InProgress (snapshot taken over, volume
// made, mover pod started). It measures; it asserts only that every backup completes.
func TestBenchDataMoverVsFileSystem(t *testing.T) {
	if os.Getenv("FERRY_E2E_BENCH") != "1" {
		t.Skip("runs with FERRY_E2E_BENCH=1 (make bench-datamover)")
	}
	size := 1024
	if v, err := strconv.Atoi(os.Getenv("FERRY_BENCH_MIB")); err == nil && v > 0 {
		size = v
	}
	c, ns := story(t, "bench")
	ctx := t.Context()
	app := c.NewApp(ns)
	app.ClaimSize = fmt.Sprintf("%dMi", size*2)
	app.Volumes = []AppVolume{{App: "web", Dir: "/content"}}
	t.Cleanup(app.Discard)
	must(t, app.Deploy(ctx))
	pod, err := app.Pod(ctx, "web")
	must(t, err)
	const rounds = 3
	times := map[string][]time.Duration{}
	var toInProgress []time.Duration
	for round := range rounds {
		order := []string{"file-system", "data mover"}
		if round%2 == 1 {
			slices.Reverse(order)
		}
		for _, path := range order {
			// Fresh data each time, so that every backup uploads all of it.
			_, err := c.Exec(ctx, ns, pod, fmt.Sprintf("rm -rf /content/* && i=0; while [ $i -lt %d ]; do dd if=/dev/urandom of=/content/f$i bs=1M count=64 2>/dev/null; i=$((i+1)); done; sync", size/64))
			must(t, err)
			name := fmt.Sprintf("%s-%d-%s", ns, round, map[string]string{"file-system": "fs", "data mover": "dm"}[path])
			start := time.Now()
			b, err := c.Backup(ctx, name, func(b *velerov1.Backup) {
				if path == "data mover" {
					yes := true
					b.Spec.DefaultVolumesToFsBackup, b.Spec.SnapshotMoveData = nil, &yes
				}
			}, ns)
			must(t, err)
			var inProgress time.Duration
			must(t, c.Poll(ctx, 10*time.Minute, "backup "+name, func() (bool, string, error) {
				if path == "data mover" && inProgress == 0 {
					dus := &velerov2alpha1.DataUploadList{}
					if err := c.Client.List(ctx, dus, client.InNamespace(InstallNamespace), client.MatchingLabels{velerov1.LabelBackupName: name}); err != nil {
						return false, "", err
					}
					for _, du := range dus.Items {
						if du.Status.Phase == velerov2alpha1.DataMovePhaseInProgress || du.Status.Phase.Terminal() {
							inProgress = time.Since(du.CreationTimestamp.Time)
						}
					}
				}
				return c.BackupEnded(ctx, b)
			}))
			took := time.Since(start)
			if b.Status.Phase != velerov1.BackupPhaseCompleted {
				t.Fatalf("backup %s: %s: %s", name, b.Status.Phase, b.Status.FailureReason)
			}
			times[path] = append(times[path], took)
			if path == "data mover" {
				toInProgress = append(toInProgress, inProgress)
			}
			t.Logf("round %d %-11s %s", round+1, path, took.Round(10*time.Millisecond))
		}
	}
	fs, dm := summary(times["file-system"]), summary(times["data mover"])
	var ratios []string
	for i := range rounds {
		ratios = append(ratios, fmt.Sprintf("%.2f", times["data mover"][i].Seconds()/times["file-system"][i].Seconds()))
	}
	fmt.Printf("== %d MiB claim, %d interleaved rounds, Backup created → Completed (wall clock, 200 ms polling)\n", size, rounds)
	fmt.Printf("   file-system path: median %s\n", fs)
	fmt.Printf("   data mover:       median %s (ratio per round %s)\n", dm, strings.Join(ratios, ", "))
	fmt.Printf("   DataUpload created → InProgress: median %s\n", summary(toInProgress))
	fmt.Printf("BENCH datamover mib=%d fs_median_s=%.2f dm_median_s=%.2f dm_to_inprogress_median_s=%.2f\n", size,
		median(times["file-system"]).Seconds(), median(times["data mover"]).Seconds(), median(toInProgress).Seconds())
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func summary(d []time.Duration) string {
	return fmt.Sprintf("%s (%s–%s)", median(d).Round(10*time.Millisecond), slices.Min(d).Round(10*time.Millisecond), slices.Max(d).Round(10*time.Millisecond))
}
