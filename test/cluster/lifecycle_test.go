package cluster

import (
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/test/harness"
)

func oneWorker(pvb *velerov1.PodVolumeBackup) {
	pvb.Spec.UploaderSettings = &map[string]string{"ParallelFilesUpload": "1"}
}

// Long backups are timed out, canceled, and killed with their node-agent; the restarted agent
// finishes the last one and its snapshot restores byte for byte. Each runs on a volume of its
// own, so that none resumes from another's checkpoint and ends before it is observed.
func TestLongBackupTimeoutCancelAndAgentCrash(t *testing.T) {
	c := harness.New(t)
	node := c.StartNode("node-a")
	ns := c.Namespace("big")
	pod := c.CreatePod(node, ns, "store",
		harness.VolumeSpec{Name: "timeout", Claim: "store-timeout"},
		harness.VolumeSpec{Name: "cancel", Claim: "store-cancel"},
		harness.VolumeSpec{Name: "crash", Claim: "store-crash"})
	for i, vol := range []string{"timeout", "cancel", "crash"} {
		if err := harness.FillVolume(pod.Dirs[vol], 48, 640<<20, uint64(30+i)); err != nil {
			t.Fatal(err)
		}
	}
	want, err := harness.Describe(pod.Dirs["crash"])
	if err != nil {
		t.Fatal(err)
	}

	timedOut := c.BackupVolume(pod, "timeout", "timeout", oneWorker, func(p *velerov1.PodVolumeBackup) {
		p.Spec.OperationTimeout = &metav1.Duration{Duration: time.Second}
	})
	c.WaitPhase(timedOut, velerov1.PodVolumePhaseFailed, time.Minute)
	if !strings.Contains(timedOut.Status.Message, "timed out after 1s") {
		t.Errorf("timeout message: %q", timedOut.Status.Message)
	}

	canceled := c.BackupVolume(pod, "cancel", "cancel", oneWorker)
	c.WaitProgress(canceled, time.Minute)
	askedAt := time.Now()
	c.PatchSpec(canceled, map[string]any{"cancel": true})
	c.WaitPhase(canceled, velerov1.PodVolumePhaseCanceled, 30*time.Second)
	t.Logf("cancel took %s", time.Since(askedAt).Round(time.Millisecond))

	crashed := c.BackupVolume(pod, "crash", "crash", oneWorker)
	c.WaitProgress(crashed, time.Minute)
	node.Stop(syscall.SIGKILL)
	node.Start()
	c.WaitPhase(crashed, velerov1.PodVolumePhaseCompleted, 3*time.Minute)
	if crashed.Status.CompletionTimestamp == nil || crashed.Status.SnapshotID == "" {
		t.Fatalf("status after restart: %+v", crashed.Status)
	}

	target := c.CreatePod(node, ns, "store-restored", harness.VolumeSpec{Name: "data", Claim: "store-restored-data"})
	pvr := c.RestoreVolume(target, "data", crashed.Status.SnapshotID, "restore-after-crash")
	c.WaitPhase(pvr, velerov1.PodVolumePhaseCompleted, 2*time.Minute)
	got, err := harness.Describe(target.Dirs["data"])
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("the snapshot finished after the crash restores differently")
	}
}
