package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/backuprecord"
	"github.com/ferry-backup/ferry/internal/repository"
	"github.com/ferry-backup/ferry/test/harness"
)

const harnessPassword = "harness-password-1"

// A backup's life after it completed: deleting the Backup object keeps the data and sync brings
// it back; a DeleteBackupRequest deletes the data, refuses a ReadOnly location, stops a running
// backup first; sync removes a Backup whose record is gone; restores that skip volumes say so.
func TestDeletionIsExplicitAndSyncBringsBackupsBack(t *testing.T) {
	c := harness.New(t)
	c.StartServer("--backup-sync-period=1s")
	node := c.StartNode("node-a")
	ns := c.Namespace("app")
	pod := c.CreatePod(node, ns, "app", harness.VolumeSpec{Name: "data", Claim: "app-data"}, harness.VolumeSpec{Name: "logs", Claim: "app-logs"})
	for i, vol := range []string{"data", "logs"} {
		if err := harness.FillVolume(pod.Dirs[vol], 8, 4<<20, uint64(90+i)); err != nil {
			t.Fatal(err)
		}
	}
	want, err := harness.Describe(pod.Dirs["data"])
	if err != nil {
		t.Fatal(err)
	}
	// The default location, by omission; made by a schedule, whose label sync must give back.
	yes := true
	first := &velerov1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: c.Install, Name: "first",
		Labels: map[string]string{velerov1.LabelScheduleName: "nightly", "team": "web"}},
		Spec: velerov1.BackupSpec{IncludedNamespaces: []string{ns}, DefaultVolumesToFsBackup: &yes}}
	if err := c.Client.Create(context.Background(), first); err != nil {
		t.Fatal(err)
	}
	waitBackup(t, c, first, velerov1.BackupPhaseCompleted)
	if first.Spec.StorageLocation != "default" {
		t.Errorf("spec.storageLocation = %q, want the default location the server resolved", first.Spec.StorageLocation)
	}
	second := newBackup(t, c, "second", "default", ns)
	waitBackup(t, c, second, velerov1.BackupPhaseCompleted)
	// Backups that must be seen running go to a location whose pack uploads are slowed: on a
	// fast machine 384 MiB are backed up in under a second, before anyone could watch.
	slow, slowLoc := c.CreateSlowS3BSL("slow", time.Second)

	t.Run("kubectl delete keeps the data and sync brings the Backup back", func(t *testing.T) {
		oldUID := first.UID
		if err := c.Client.Delete(context.Background(), first); err != nil {
			t.Fatal(err)
		}
		c.Eventually(time.Minute, func() (bool, string) {
			err := c.Client.Get(context.Background(), client.ObjectKeyFromObject(first), first)
			return err == nil && first.UID != oldUID && first.Status.Phase == velerov1.BackupPhaseCompleted,
				"the Backup is not back yet: " + string(first.Status.Phase)
		})
		if first.Annotations[velerov1.AnnotationSyncedFrom] != "default" || first.Labels[velerov1.LabelStorageLocation] != "default" ||
			first.Labels[velerov1.LabelScheduleName] != "nightly" || first.Labels["team"] != "web" ||
			first.Status.PodVolumeBackups == nil || first.Status.PodVolumeBackups.Completed != 2 || first.Status.Expiration == nil ||
			len(first.Spec.IncludedNamespaces) != 1 {
			t.Errorf("synced Backup: meta %v %v, spec %+v, status %+v", first.Annotations, first.Labels, first.Spec, first.Status)
		}
		if got := snapshotsOf(t, c, harnessPassword, "first"); len(got) != 2 {
			t.Errorf("snapshots of the kubectl-deleted backup: %d, want 2", len(got))
		}
		target := c.CreatePod(node, c.Namespace("synced"), "app", harness.VolumeSpec{Name: "data", Claim: "app-data"}, harness.VolumeSpec{Name: "logs", Claim: "app-logs"})
		rs := newRestore(t, c, "from-synced", "first", ns, target.Namespace)
		waitRestore(t, c, rs, velerov1.RestorePhaseCompleted)
		if got, _ := harness.Describe(target.Dirs["data"]); got != want {
			t.Error("the synced backup restores differently")
		}
	})

	t.Run("restores that skip volumes say so", func(t *testing.T) {
		// The claim app-logs exists, but no pod mounts it: a claim that exists is filled only
		// through a pod (a missing one would be re-created and filled by the data mover).
		partial := c.CreatePod(node, c.Namespace("partial"), "app", harness.VolumeSpec{Name: "data", Claim: "app-data"})
		createUnmountedClaim(t, c, partial.Namespace, "app-logs", "")
		rs := newRestore(t, c, "partial", "second", ns, partial.Namespace)
		waitRestore(t, c, rs, velerov1.RestorePhasePartiallyFailed)
		if !strings.Contains(rs.Status.FailureReason, "volume logs: claim app-logs exists in "+partial.Namespace+" but no scheduled pod mounts it") {
			t.Errorf("failure reason %q does not name the skipped volume", rs.Status.FailureReason)
		}
		if got, _ := harness.Describe(partial.Dirs["data"]); got != want {
			t.Error("the volume that had a target restores differently")
		}
		// Into a namespace that does not exist: the restore creates it and re-creates the claims
		// for DataDownloads. The simulated nodes' agents have no mover image, so those fail, and
		// the restore says which and why.
		none := newRestore(t, c, "nowhere", "second", ns, "no-such-namespace")
		waitRestore(t, c, none, velerov1.RestorePhaseFailed)
		if !strings.Contains(none.Status.FailureReason, "claim no-such-namespace/app-data (DataDownload") ||
			!strings.Contains(none.Status.FailureReason, "no data mover image") {
			t.Errorf("failure reason %q", none.Status.FailureReason)
		}
		claim := &corev1.PersistentVolumeClaim{}
		if err := c.Client.Get(context.Background(), client.ObjectKey{Namespace: "no-such-namespace", Name: "app-data"}, claim); err != nil ||
			claim.Spec.Selector == nil || claim.Spec.Selector.MatchLabels[velerov1.LabelDynamicPVRestore] == "" {
			t.Errorf("the restore did not re-create claim app-data in the namespace it created: %v %+v", err, claim.Spec.Selector)
		}
	})

	t.Run("a request for a missing backup", func(t *testing.T) {
		dbr := deleteRequest(t, c, "no-such-backup")
		if len(dbr.Status.Errors) != 1 || !strings.Contains(dbr.Status.Errors[0], "backup no-such-backup not found") {
			t.Errorf("errors: %q", dbr.Status.Errors)
		}
	})

	t.Run("a ReadOnly location deletes nothing", func(t *testing.T) {
		bsl := &velerov1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Namespace: c.Install, Name: "default"}}
		c.PatchSpec(bsl, map[string]any{"accessMode": "ReadOnly"})
		dbr := deleteRequest(t, c, "second")
		c.PatchSpec(bsl, map[string]any{"accessMode": "ReadWrite"})
		if len(dbr.Status.Errors) != 1 || !strings.Contains(dbr.Status.Errors[0], "default of backup second is ReadOnly") {
			t.Errorf("errors: %q", dbr.Status.Errors)
		}
		if err := c.Client.Get(context.Background(), client.ObjectKeyFromObject(second), second); err != nil || second.Status.Phase != velerov1.BackupPhaseCompleted {
			t.Errorf("backup second after a refused deletion: %v, %s", err, second.Status.Phase)
		}
		if got := snapshotsOf(t, c, harnessPassword, "second"); len(got) != 2 {
			t.Errorf("snapshots of backup second: %d, want 2", len(got))
		}
	})

	t.Run("a request deletes the snapshots, the record and the Backup", func(t *testing.T) {
		dbr := deleteRequest(t, c, "first")
		if len(dbr.Status.Errors) > 0 {
			t.Fatalf("errors: %q", dbr.Status.Errors)
		}
		if err := c.Client.Get(context.Background(), client.ObjectKeyFromObject(first), first); err == nil {
			t.Errorf("the Backup is still there, %s", first.Status.Phase)
		}
		if got := snapshotsOf(t, c, harnessPassword, "first"); len(got) != 0 {
			t.Errorf("snapshots left: %v", got)
		}
		if got := snapshotsOf(t, c, harnessPassword, "second"); len(got) != 2 {
			t.Errorf("snapshots of the other backup: %d, want 2", len(got))
		}
		var rec backuprecord.Record
		if err := openDefault(t, c, harnessPassword).LoadRecord(context.Background(), backuprecord.Kind, "first", &rec); !errors.Is(err, repository.ErrNoRecord) {
			t.Errorf("the record of the deleted backup: %v", err)
		}
	})

	t.Run("a request stops a running backup before it deletes it", func(t *testing.T) {
		big := c.CreatePod(node, c.Namespace("big"), "big", harness.VolumeSpec{Name: "data", Claim: "big-data"})
		if err := harness.FillVolume(big.Dirs["data"], 32, 384<<20, 7); err != nil {
			t.Fatal(err)
		}
		yes := true
		running := &velerov1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: c.Install, Name: "running"},
			Spec: velerov1.BackupSpec{IncludedNamespaces: []string{big.Namespace}, DefaultVolumesToFsBackup: &yes, StorageLocation: slow.Name,
				UploaderConfig: &velerov1.UploaderConfigForBackup{ParallelFilesUpload: 1}}}
		if err := c.Client.Create(context.Background(), running); err != nil {
			t.Fatal(err)
		}
		pvb := &velerov1.PodVolumeBackup{}
		c.Eventually(time.Minute, func() (bool, string) {
			list := &velerov1.PodVolumeBackupList{}
			_ = c.Client.List(context.Background(), list, client.InNamespace(c.Install), client.MatchingLabels{velerov1.LabelBackupName: "running"})
			if len(list.Items) == 0 {
				return false, "no PodVolumeBackup yet"
			}
			*pvb = list.Items[0]
			return true, ""
		})
		c.WaitProgress(pvb, time.Minute)
		dbr := deleteRequest(t, c, "running")
		if len(dbr.Status.Errors) > 0 {
			t.Fatalf("errors: %q", dbr.Status.Errors)
		}
		if err := c.Client.Get(context.Background(), client.ObjectKeyFromObject(pvb), pvb); err != nil || pvb.Status.Phase != velerov1.PodVolumePhaseCanceled {
			t.Errorf("the PodVolumeBackup: %v, %s", err, pvb.Status.Phase)
		}
		if got := snapshotsAt(t, slowLoc, harnessPassword, "running"); len(got) != 0 {
			t.Errorf("snapshots (checkpoints) of the stopped backup left: %v", got)
		}
		// The request deletes the object too, finalizer and all.
		if err := c.Client.Get(context.Background(), client.ObjectKeyFromObject(running), running); !apierrors.IsNotFound(err) {
			t.Errorf("the deleted running Backup is still there: %v, %s, finalizers %v", err, running.Status.Phase, running.Finalizers)
		}
	})

	t.Run("sync removes a Completed Backup whose record is gone, and nothing else", func(t *testing.T) {
		if err := openDefault(t, c, harnessPassword).DeleteRecord(context.Background(), backuprecord.Kind, "second"); err != nil {
			t.Fatal(err)
		}
		c.Eventually(time.Minute, func() (bool, string) {
			err := c.Client.Get(context.Background(), client.ObjectKeyFromObject(second), second)
			return err != nil, "backup second is still there"
		})
		if got := snapshotsOf(t, c, harnessPassword, "second"); len(got) != 2 {
			t.Errorf("snapshots of backup second: %d, want 2 (sync never deletes data)", len(got))
		}
	})

	t.Run("a Backup of an older version loses its finalizer and a mistyped location never blocks", func(t *testing.T) {
		legacy := &velerov1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: c.Install, Name: "legacy", Finalizers: []string{"ferry.io/delete-snapshots"}},
			Spec: velerov1.BackupSpec{StorageLocation: "defualt"}}
		if err := c.Client.Create(context.Background(), legacy); err != nil {
			t.Fatal(err)
		}
		waitBackup(t, c, legacy, velerov1.BackupPhaseFailedValidation)
		c.Eventually(time.Minute, func() (bool, string) {
			_ = c.Client.Get(context.Background(), client.ObjectKeyFromObject(legacy), legacy)
			return len(legacy.Finalizers) == 0, "finalizers: " + strings.Join(legacy.Finalizers, ",")
		})
		// It never started, so nothing of it is in any store: the request deletes the object.
		dbr := deleteRequest(t, c, "legacy")
		if len(dbr.Status.Errors) != 0 {
			t.Errorf("errors: %q", dbr.Status.Errors)
		}
		if err := c.Client.Get(context.Background(), client.ObjectKeyFromObject(legacy), legacy); !apierrors.IsNotFound(err) {
			t.Errorf("the Backup that never started is still there: %v, %s", err, legacy.Status.Phase)
		}
	})

	t.Run("kubectl delete of a running backup stops it and deletes what it wrote", func(t *testing.T) {
		big := c.CreatePod(node, c.Namespace("big"), "big", harness.VolumeSpec{Name: "data", Claim: "big-data"})
		if err := harness.FillVolume(big.Dirs["data"], 32, 384<<20, 8); err != nil {
			t.Fatal(err)
		}
		yes := true
		running := &velerov1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: c.Install, Name: "deleted-running"},
			Spec: velerov1.BackupSpec{IncludedNamespaces: []string{big.Namespace}, DefaultVolumesToFsBackup: &yes, StorageLocation: slow.Name,
				UploaderConfig: &velerov1.UploaderConfigForBackup{ParallelFilesUpload: 1}}}
		if err := c.Client.Create(context.Background(), running); err != nil {
			t.Fatal(err)
		}
		if !waitVolumeMoving(t, c, running) {
			t.Fatal("the backup ended before its volume was being uploaded")
		}
		if err := c.Client.Get(context.Background(), client.ObjectKeyFromObject(running), running); err != nil ||
			!slices.Contains(running.Finalizers, velerov1.FinalizerUnfinished) {
			t.Fatalf("a running Backup: %v, finalizers %v, want %s", err, running.Finalizers, velerov1.FinalizerUnfinished)
		}
		if err := c.Client.Delete(context.Background(), running); err != nil {
			t.Fatal(err)
		}
		c.Eventually(2*time.Minute, func() (bool, string) {
			err := c.Client.Get(context.Background(), client.ObjectKeyFromObject(running), running)
			return apierrors.IsNotFound(err), fmt.Sprintf("the deleted Backup is still there: %s, finalizers %v", running.Status.Phase, running.Finalizers)
		})
		// The request lets the Backup go (its finalizer) before it marks itself Processed.
		dbrs := &velerov1.DeleteBackupRequestList{}
		c.Eventually(time.Minute, func() (bool, string) {
			if err := c.Client.List(context.Background(), dbrs, client.InNamespace(c.Install), client.MatchingLabels{velerov1.LabelBackupUID: string(running.UID)}); err != nil {
				return false, err.Error()
			}
			return len(dbrs.Items) == 1 && dbrs.Items[0].Status.Phase == velerov1.DeleteBackupRequestPhaseProcessed,
				fmt.Sprintf("the DeleteBackupRequests of the deleted backup: %+v", dbrs.Items)
		})
		if len(dbrs.Items[0].Status.Errors) > 0 {
			t.Errorf("the DeleteBackupRequest of the deleted backup: %q", dbrs.Items[0].Status.Errors)
		}
		if got := snapshotsAt(t, slowLoc, harnessPassword, "deleted-running"); len(got) != 0 {
			t.Errorf("snapshots (checkpoints) of the deleted backup left: %v", got)
		}
		// A finished one loses only its object (the first story): the finalizer is gone once it ended.
		if err := c.Client.Get(context.Background(), client.ObjectKeyFromObject(second), second); err == nil &&
			slices.Contains(second.Finalizers, velerov1.FinalizerUnfinished) {
			t.Errorf("a Completed Backup still holds %s", velerov1.FinalizerUnfinished)
		}
	})

	t.Run("a backup whose location is gone can be deleted, and says what stays in the store", func(t *testing.T) {
		other := c.CreateFilesystemBSL("other")
		b := newBackup(t, c, "in-other", other.Name, ns)
		waitBackup(t, c, b, velerov1.BackupPhaseCompleted)
		if err := c.Client.Delete(context.Background(), other); err != nil {
			t.Fatal(err)
		}
		c.Eventually(time.Minute, func() (bool, string) {
			err := c.Client.Get(context.Background(), client.ObjectKeyFromObject(other), other)
			return apierrors.IsNotFound(err), "location other is still there"
		})
		dbr := deleteRequest(t, c, "in-other")
		if len(dbr.Status.Errors) != 1 || !strings.Contains(dbr.Status.Errors[0], "backup storage location other of backup in-other: not found") ||
			!strings.Contains(dbr.Status.Errors[0], "create the location again") {
			t.Errorf("errors: %q", dbr.Status.Errors)
		}
		if err := c.Client.Get(context.Background(), client.ObjectKeyFromObject(b), b); !apierrors.IsNotFound(err) {
			t.Errorf("the Backup of the deleted location is still there: %v, %s", err, b.Status.Phase)
		}
	})
}

func newRestore(t *testing.T, c *harness.Cluster, name, backup, from, to string) *velerov1.Restore {
	t.Helper()
	rs := &velerov1.Restore{ObjectMeta: metav1.ObjectMeta{Namespace: c.Install, Name: name},
		Spec: velerov1.RestoreSpec{BackupName: backup, NamespaceMapping: map[string]string{from: to}}}
	if err := c.Client.Create(context.Background(), rs); err != nil {
		t.Fatal(err)
	}
	return rs
}

// deleteRequest creates a DeleteBackupRequest for the backup and returns it once Processed.
func deleteRequest(t *testing.T, c *harness.Cluster, backup string) *velerov1.DeleteBackupRequest {
	t.Helper()
	dbr := &velerov1.DeleteBackupRequest{ObjectMeta: metav1.ObjectMeta{Namespace: c.Install, GenerateName: backup + "-"},
		Spec: velerov1.DeleteBackupRequestSpec{BackupName: backup}}
	if err := c.Client.Create(context.Background(), dbr); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c.Eventually(2*time.Minute, func() (bool, string) {
		_ = c.Client.Get(context.Background(), client.ObjectKeyFromObject(dbr), dbr)
		return dbr.Status.Phase == velerov1.DeleteBackupRequestPhaseProcessed, "request is " + string(dbr.Status.Phase)
	})
	t.Logf("DeleteBackupRequest for %s processed in %s; errors %q", backup, time.Since(start).Round(time.Millisecond), dbr.Status.Errors)
	return dbr
}

// Nothing is lost silently: a volume holding a FIFO is backed up without it (never opened, so
// nothing hangs), its PodVolumeBackup says so, and the Backup ends PartiallyFailed naming it.
func TestAVolumeWithAFIFOMakesThePartialBackupSaySo(t *testing.T) {
	c := harness.New(t)
	c.StartServer()
	node := c.StartNode("node-a")
	ns := c.Namespace("pipes")
	pod := c.CreatePod(node, ns, "app", harness.VolumeSpec{Name: "data", Claim: "app-data"})
	if err := harness.FillVolume(pod.Dirs["data"], 4, 1<<20, 5); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(pod.Dirs["data"], "control.fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	b := newBackup(t, c, "with-fifo", "default", ns)
	waitBackup(t, c, b, velerov1.BackupPhasePartiallyFailed)
	if !strings.Contains(b.Status.FailureReason, "control.fifo: is a FIFO: not backed up") || !strings.Contains(b.Status.FailureReason, "1 entries not backed up") {
		t.Errorf("failure reason %q does not name the FIFO", b.Status.FailureReason)
	}
	list := &velerov1.PodVolumeBackupList{}
	if err := c.Client.List(context.Background(), list, client.InNamespace(c.Install), client.MatchingLabels{velerov1.LabelBackupName: b.Name}); err != nil || len(list.Items) != 1 {
		t.Fatalf("PodVolumeBackups: %v, %d", err, len(list.Items))
	}
	if p := list.Items[0]; p.Status.Phase != velerov1.PodVolumePhaseCompleted || p.Status.SnapshotID == "" ||
		!meta.IsStatusConditionTrue(p.Status.Conditions, velerov1.ConditionEntriesNotBackedUp) {
		t.Errorf("PodVolumeBackup: %s, snapshot %q, conditions %+v", p.Status.Phase, p.Status.SnapshotID, p.Status.Conditions)
	}
}

// createUnmountedClaim creates a claim bound (by name) to a volume, that no pod mounts.
func createUnmountedClaim(t *testing.T, c *harness.Cluster, ns, name, class string) {
	t.Helper()
	pvc := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.PersistentVolumeClaimSpec{StorageClassName: &class, VolumeName: "pv-" + ns + "-" + name,
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}}}
	if err := c.Client.Create(context.Background(), pvc); err != nil {
		t.Fatal(err)
	}
}

// Metadata a snapshot does not keep is reported, not hidden, and is no failure: a volume with a
// hard-linked file and a file with an extended attribute is backed up Completed, its
// PodVolumeBackup and the Backup carry MetadataNotPreserved naming them, and the Backup counts
// the volume in its warnings.
func TestHardLinksAndAttributesAreWarningsNotFailures(t *testing.T) {
	c := harness.New(t)
	c.StartServer()
	node := c.StartNode("node-a")
	ns := c.Namespace("links")
	pod := c.CreatePod(node, ns, "app", harness.VolumeSpec{Name: "data", Claim: "app-data"})
	dir := pod.Dirs["data"]
	if err := harness.FillVolume(dir, 4, 1<<20, 6); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "original"), []byte("two names"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(dir, "original"), filepath.Join(dir, "second-name")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "labelled"), []byte("with an attribute"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(filepath.Join(dir, "labelled"), "user.ferry-test", []byte("1"), 0); err != nil {
		t.Fatalf("the test needs a file system with extended attributes: %v", err)
	}
	b := newBackup(t, c, "with-links", "default", ns)
	waitBackup(t, c, b, velerov1.BackupPhaseCompleted)
	cond := meta.FindStatusCondition(b.Status.Conditions, velerov1.ConditionMetadataNotPreserved)
	if cond == nil || cond.Status != metav1.ConditionTrue || b.Status.Warnings != 1 ||
		!strings.Contains(cond.Message, "volume data") || !strings.Contains(cond.Message, "1 files with several hard links") ||
		!strings.Contains(cond.Message, `"labelled"`) || !strings.Contains(cond.Message, "user.ferry-test") {
		t.Errorf("Backup: warnings %d, condition %+v", b.Status.Warnings, cond)
	}
	list := &velerov1.PodVolumeBackupList{}
	if err := c.Client.List(context.Background(), list, client.InNamespace(c.Install), client.MatchingLabels{velerov1.LabelBackupName: b.Name}); err != nil || len(list.Items) != 1 {
		t.Fatalf("PodVolumeBackups: %v, %d", err, len(list.Items))
	}
	if p := list.Items[0]; p.Status.Phase != velerov1.PodVolumePhaseCompleted ||
		!meta.IsStatusConditionTrue(p.Status.Conditions, velerov1.ConditionMetadataNotPreserved) ||
		meta.FindStatusCondition(p.Status.Conditions, velerov1.ConditionEntriesNotBackedUp) != nil ||
		!strings.Contains(p.Status.Message, "metadata not preserved") {
		t.Errorf("PodVolumeBackup: %s, %q, conditions %+v", p.Status.Phase, p.Status.Message, p.Status.Conditions)
	}
}
