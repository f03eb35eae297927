package cluster

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/repoaccess"
	"github.com/ferry-backup/ferry/test/harness"
)

// concurrentRepoOperations limits the operations of a node, and a change to the ConfigMap takes
// effect without restarting the node-agent; an invalid change is reported and ignored.
func TestConfigMapLimitsConcurrencyAndAppliesLive(t *testing.T) {
	c := harness.New(t)
	c.SetNodeAgentConfig(map[string]string{"concurrentRepoOperations": "1", "parallelFilesUpload": "1"})
	node := c.StartNode("node-a")
	ns := c.Namespace("busy")
	pods := []*harness.Pod{
		c.CreatePod(node, ns, "one", harness.VolumeSpec{Name: "data", Claim: "one-data"}),
		c.CreatePod(node, ns, "two", harness.VolumeSpec{Name: "data", Claim: "two-data"}),
	}
	fill := func(seed uint64) {
		for i, p := range pods {
			if err := harness.FillVolume(p.Dirs["data"], 24, 600<<20, seed+uint64(i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// To a location whose pack uploads are slowed: on a fast machine 600 MiB are backed up in a
	// second, before the two backups could be seen waiting for, or sharing, the slots.
	slow, _ := c.CreateSlowS3BSL("slow", 500*time.Millisecond)
	toSlow := func(p *velerov1.PodVolumeBackup) { p.Spec.BackupStorageLocation = slow.Name }
	round := func(name string) []*velerov1.PodVolumeBackup {
		return []*velerov1.PodVolumeBackup{c.BackupVolume(pods[0], "data", name+"-one", toSlow), c.BackupVolume(pods[1], "data", name+"-two", toSlow)}
	}

	fill(10)
	first := round("serial")
	c.Eventually(time.Minute, func() (bool, string) {
		for _, pvb := range first {
			_ = c.Client.Get(context.Background(), client.ObjectKeyFromObject(pvb), pvb)
			if strings.Contains(pvb.Status.Message, "waiting for one of 1 repository operation slots") {
				return true, ""
			}
		}
		return false, "no backup reported waiting for the single slot"
	})
	for _, pvb := range first {
		c.WaitPhase(pvb, velerov1.PodVolumePhaseCompleted, 2*time.Minute)
	}

	c.SetNodeAgentConfig(map[string]string{"concurrentRepoOperations": "zero"})
	c.Eventually(30*time.Second, func() (bool, string) {
		events := &corev1.EventList{}
		_ = c.Client.List(context.Background(), events, client.InNamespace(c.Install))
		return hasEvent(events, "InvalidConfig", "concurrentRepoOperations"), "no InvalidConfig event naming the key"
	})

	c.SetNodeAgentConfig(map[string]string{"concurrentRepoOperations": "2", "parallelFilesUpload": "1"})
	c.Eventually(30*time.Second, func() (bool, string) {
		return strings.Contains(node.Log(), `"concurrentRepoOperations":2`), "the node-agent did not apply concurrentRepoOperations 2"
	})
	fill(20) // new data, so the next backups read and upload for a while
	second := round("parallel")
	c.Eventually(2*time.Minute, func() (bool, string) {
		busy := 0
		for _, pvb := range second {
			_ = c.Client.Get(context.Background(), client.ObjectKeyFromObject(pvb), pvb)
			if pvb.Status.Phase == velerov1.PodVolumePhaseInProgress && pvb.Status.Progress.BytesDone > 0 {
				busy++
			}
			if pvb.Status.Phase.Terminal() {
				t.Fatalf("%s ended before both backups were seen running together", pvb.Name)
			}
		}
		return busy == 2, fmt.Sprintf("%d of 2 backups in progress at once", busy)
	})
	for _, pvb := range second {
		c.WaitPhase(pvb, velerov1.PodVolumePhaseCompleted, 2*time.Minute)
	}
}

// Rotating the password (re-key, then the Secret) keeps backups working, incremental, and keeps
// earlier snapshots restorable.
func TestPasswordRotationKeepsBackupsWorking(t *testing.T) {
	c := harness.New(t)
	node := c.StartNode("node-a")
	ns := c.Namespace("rotate")
	pod := c.CreatePod(node, ns, "app", harness.VolumeSpec{Name: "data", Claim: "app-data"})
	if err := harness.FillVolume(pod.Dirs["data"], 30, 30<<20, 5); err != nil {
		t.Fatal(err)
	}
	want, _ := harness.Describe(pod.Dirs["data"])
	before := c.BackupVolume(pod, "data", "before-rotation")
	c.WaitPhase(before, velerov1.PodVolumePhaseCompleted, time.Minute)

	c.RotatePassword("harness-password-2", "default")
	after := c.BackupVolume(pod, "data", "after-rotation")
	c.WaitPhase(after, velerov1.PodVolumePhaseCompleted, time.Minute)
	if up := after.Status.Progress.IncrementalBytes; up > 1<<20 {
		t.Errorf("the backup after rotation uploaded %d bytes of unchanged data; it should be incremental", up)
	}

	target := c.CreatePod(node, ns, "app-restored", harness.VolumeSpec{Name: "data", Claim: "app-restored-data"})
	pvr := c.RestoreVolume(target, "data", before.Status.SnapshotID, "restore-old-snapshot")
	c.WaitPhase(pvr, velerov1.PodVolumePhaseCompleted, time.Minute)
	if got, _ := harness.Describe(target.Dirs["data"]); got != want {
		t.Error("the snapshot taken before the rotation restores differently")
	}
}

// A ReadOnly location is never re-keyed: when the password changes, the server records the
// password it keeps, and its snapshots still restore.
func TestReadOnlyLocationStillRestoresAfterARotation(t *testing.T) {
	c := harness.New(t)
	c.CreateFilesystemBSL("archive")
	c.StartServer()
	node := c.StartNode("node-a")
	ns := c.Namespace("archive")
	pod := c.CreatePod(node, ns, "app", harness.VolumeSpec{Name: "data", Claim: "app-data"})
	if err := harness.FillVolume(pod.Dirs["data"], 6, 2<<20, 8); err != nil {
		t.Fatal(err)
	}
	want, _ := harness.Describe(pod.Dirs["data"])
	inArchive := func(p *velerov1.PodVolumeBackup) { p.Spec.BackupStorageLocation = "archive" }
	pvb := c.BackupVolume(pod, "data", "into-archive", inArchive)
	c.WaitPhase(pvb, velerov1.PodVolumePhaseCompleted, time.Minute)

	c.PatchSpec(&velerov1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Namespace: c.Install, Name: "archive"}},
		map[string]any{"accessMode": "ReadOnly"})
	c.SetPassword("rotated-with-a-read-only-location")
	applied := &corev1.Secret{}
	c.Eventually(time.Minute, func() (bool, string) {
		_ = c.Client.Get(context.Background(), client.ObjectKey{Namespace: c.Install, Name: repoaccess.AppliedPasswordSecret}, applied)
		return string(applied.Data[repoaccess.PasswordKey]) == "rotated-with-a-read-only-location", "the new password is not applied yet"
	})
	if got := string(applied.Data[repoaccess.LocationPasswordKey("archive")]); got != "harness-password-1" {
		t.Errorf("the ReadOnly location's password is not recorded (%d bytes)", len(got))
	}
	target := c.CreatePod(node, ns, "app-restored", harness.VolumeSpec{Name: "data", Claim: "app-restored-data"})
	pvr := c.RestoreVolume(target, "data", pvb.Status.SnapshotID, "from-archive", func(p *velerov1.PodVolumeRestore) {
		p.Spec.BackupStorageLocation = "archive"
	})
	c.WaitPhase(pvr, velerov1.PodVolumePhaseCompleted, time.Minute)
	if got, _ := harness.Describe(target.Dirs["data"]); got != want {
		t.Error("the ReadOnly location's snapshot restores differently after the rotation")
	}
}
