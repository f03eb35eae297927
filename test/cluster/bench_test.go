package cluster

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/repository"
	"github.com/ferry-backup/ferry/internal/uploader"
	"github.com/ferry-backup/ferry/test/harness"
)

// BenchmarkPodVolumeBackupPath measures a 1 GiB volume through the whole node-agent path
// (PodVolumeBackup created → Completed) against the uploader alone on the same data, and the
// time from creating a PodVolumeBackup to seeing it InProgress. The node-agent's time includes
// opening the repository; the uploader's does not. Run it once (later rounds would be
// incremental):
//
//	go test ./test/cluster -run '^$' -bench PodVolumeBackupPath -benchtime 1x
func BenchmarkPodVolumeBackupPath(b *testing.B) {
	c := harness.New(b)
	node := c.StartNode("node-a")
	ns := c.Namespace("bench")
	pod := c.CreatePod(node, ns, "app", harness.VolumeSpec{Name: "data", Claim: "app-data"})
	if err := harness.FillVolume(pod.Dirs["data"], 256, 1<<30, 42); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < b.N; i++ {
		// The uploader alone, into a repository of its own.
		loc := repository.Location{Provider: repository.ProviderFilesystem, Bucket: "alone",
			Config: map[string]string{"path": filepath.Join(b.TempDir())}}
		rep, err := repository.Open(context.Background(), repository.Options{Location: loc, Password: "pw", WorkDir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		res, err := uploader.Backup(context.Background(), rep, pod.Dirs["data"], uploader.BackupOptions{})
		alone := time.Since(start)
		_ = rep.Close(context.Background())
		if err != nil {
			b.Fatal(err)
		}

		// The node-agent path.
		pvb := c.BackupVolume(pod, "data", "bench-"+time.Now().Format("150405.000000"))
		created := time.Now()
		var inProgress time.Duration
		c.Eventually(time.Minute, func() (bool, string) {
			_ = c.Client.Get(context.Background(), client.ObjectKeyFromObject(pvb), pvb)
			if inProgress == 0 && pvb.Status.Phase != "" && pvb.Status.Phase != velerov1.PodVolumePhaseNew && pvb.Status.Phase != velerov1.PodVolumePhaseAccepted {
				inProgress = time.Since(created)
			}
			return pvb.Status.Phase.Terminal(), string(pvb.Status.Phase)
		})
		whole := time.Since(created)
		if pvb.Status.Phase != velerov1.PodVolumePhaseCompleted {
			b.Fatalf("%s: %s", pvb.Status.Phase, pvb.Status.Message)
		}
		mb := float64(res.Stats.Bytes) / 1e6
		b.ReportMetric(float64(inProgress.Milliseconds()), "ms-to-InProgress")
		b.ReportMetric(mb/whole.Seconds(), "MB/s-node-agent")
		b.ReportMetric(mb/alone.Seconds(), "MB/s-uploader")
		b.Logf("1 GiB volume: node-agent path %s (%.0f MB/s), uploader alone %s (%.0f MB/s), created→InProgress %s",
			whole.Round(time.Millisecond), mb/whole.Seconds(), alone.Round(time.Millisecond), mb/alone.Seconds(), inProgress.Round(time.Millisecond))
	}
}
