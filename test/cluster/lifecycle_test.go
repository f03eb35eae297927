package cluster

import (
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferry-backup/ferry/api/shared"
	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/operation"
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
	// To a location whose pack uploads are slowed: on a fast machine 640 MiB are backed up in a
	// second, before a timeout, a cancel or a crash could reach the backup.
	slow, _ := c.CreateSlowS3BSL("slow", time.Second)
	toSlow := func(p *velerov1.PodVolumeBackup) { p.Spec.BackupStorageLocation = slow.Name }

	timedOut := c.BackupVolume(pod, "timeout", "timeout", oneWorker, toSlow, func(p *velerov1.PodVolumeBackup) {
		p.Spec.OperationTimeout = &shared.Duration{Duration: time.Second}
	})
	c.WaitPhase(timedOut, velerov1.PodVolumePhaseFailed, time.Minute)
	if !strings.Contains(timedOut.Status.Message, "timed out after 1s") {
		t.Errorf("timeout message: %q", timedOut.Status.Message)
	}

	canceled := c.BackupVolume(pod, "cancel", "cancel", oneWorker, toSlow)
	c.WaitProgress(canceled, time.Minute)
	askedAt := time.Now()
	c.PatchSpec(canceled, map[string]any{"cancel": true})
	c.WaitPhase(canceled, velerov1.PodVolumePhaseCanceled, 30*time.Second)
	t.Logf("cancel took %s", time.Since(askedAt).Round(time.Millisecond))

	crashed := c.BackupVolume(pod, "crash", "crash", oneWorker, toSlow)
	c.WaitProgress(crashed, time.Minute)
	node.Stop(syscall.SIGKILL)
	node.Start()
	c.WaitPhase(crashed, velerov1.PodVolumePhaseCompleted, 3*time.Minute)
	if crashed.Status.CompletionTimestamp == nil || crashed.Status.SnapshotID == "" {
		t.Fatalf("status after restart: %+v", crashed.Status)
	}
	if crashed.Status.Attempts != 2 {
		t.Errorf("attempts = %d, want 2 (started, killed, resumed)", crashed.Status.Attempts)
	}

	target := c.CreatePod(node, ns, "store-restored", harness.VolumeSpec{Name: "data", Claim: "store-restored-data"})
	pvr := c.RestoreVolume(target, "data", crashed.Status.SnapshotID, "restore-after-crash",
		func(p *velerov1.PodVolumeRestore) { p.Spec.BackupStorageLocation = slow.Name })
	c.WaitPhase(pvr, velerov1.PodVolumePhaseCompleted, 2*time.Minute)
	got, err := harness.Describe(target.Dirs["data"])
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("the snapshot finished after the crash restores differently")
	}
}

// A restore its node-agent was killed in is never run again over a volume its pod may be using:
// it fails, naming the interruption. Under Velero's restore-wait init container, which holds the
// pod's containers until the restore is done, it is run again and completes.
func TestInterruptedRestoresAreReportedNotRerunOverLiveData(t *testing.T) {
	c := harness.New(t)
	node := c.StartNode("node-a")
	ns := c.Namespace("interrupted")
	src := c.CreatePod(node, ns, "src", harness.VolumeSpec{Name: "data", Claim: "src-data"})
	if err := harness.FillVolume(src.Dirs["data"], 20, 4<<20, 7); err != nil {
		t.Fatal(err)
	}
	want, err := harness.Describe(src.Dirs["data"])
	if err != nil {
		t.Fatal(err)
	}
	pvb := c.BackupVolume(src, "data", "interrupted-source")
	c.WaitPhase(pvb, velerov1.PodVolumePhaseCompleted, 2*time.Minute)

	// As a killed node-agent leaves them: InProgress, one attempt started.
	node.Stop(syscall.SIGKILL)
	live := c.CreatePod(node, ns, "live", harness.VolumeSpec{Name: "data", Claim: "live-data"})
	held := c.CreatePod(node, ns, "held", harness.VolumeSpec{Name: "data", Claim: "held-data"})
	held.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "restore-wait", Image: "velero/velero-restore-helper",
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}}}}
	if err := c.Client.Status().Update(t.Context(), held.Pod); err != nil {
		t.Fatal(err)
	}
	interrupted := func(pod *harness.Pod, name string) *velerov1.PodVolumeRestore {
		pvr := c.RestoreVolume(pod, "data", pvb.Status.SnapshotID, name)
		now := metav1.Now()
		if err := operation.PatchStatus(t.Context(), c.Client, pvr, map[string]any{"phase": velerov1.PodVolumePhaseInProgress,
			"node": node.Name, "acceptedTimestamp": now, "startTimestamp": now, "attempts": 1}); err != nil {
			t.Fatal(err)
		}
		return pvr
	}
	overLive, underWait := interrupted(live, "over-live-data"), interrupted(held, "under-restore-wait")
	node.Start()

	c.WaitPhase(overLive, velerov1.PodVolumePhaseFailed, 2*time.Minute)
	if !strings.Contains(overLive.Status.Message, "interrupted") || !strings.Contains(overLive.Status.Message, "not restored again") {
		t.Errorf("message of the interrupted restore: %q", overLive.Status.Message)
	}
	c.WaitPhase(underWait, velerov1.PodVolumePhaseCompleted, 2*time.Minute)
	if underWait.Status.Attempts != 2 {
		t.Errorf("attempts = %d, want 2", underWait.Status.Attempts)
	}
	got, err := harness.Describe(held.Dirs["data"])
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatal("the restore run again under restore-wait differs from the source")
	}
	entries, err := os.ReadDir(live.Dirs["data"])
	if err != nil || len(entries) != 0 {
		t.Fatalf("the failed restore wrote into the live volume: %d entries, %v", len(entries), err)
	}
}
