package cluster

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferry-backup/ferry/api/shared"
	velerov1 "github.com/ferry-backup/ferry/api/v1"
	velerov2alpha1 "github.com/ferry-backup/ferry/api/v2alpha1"
	"github.com/ferry-backup/ferry/internal/backuprecord"
	"github.com/ferry-backup/ferry/internal/controller/backup"
	"github.com/ferry-backup/ferry/internal/controller/restore"
	"github.com/ferry-backup/ferry/internal/operation"
	"github.com/ferry-backup/ferry/internal/repository"
	"github.com/ferry-backup/ferry/internal/uploader"
	"github.com/ferry-backup/ferry/test/harness"
)

// The server's half of the CSI data mover, with the test in the node-agent's place (it writes
// the DataUploads' and DataDownloads' status as an agent would): a Backup with snapshotMoveData
// sends a claim whose class has a VolumeSnapshotClass through a VolumeSnapshot and a DataUpload,
// a mounted claim without one through a PodVolumeBackup, and skips an unmounted one without one;
// a restarted server makes nothing twice; the record says which path made each snapshot; a
// restore re-creates missing claims and fills them through DataDownloads; a DeleteBackupRequest
// cancels running DataUploads and deletes the snapshots they made.
func TestDataMoverServerHalf(t *testing.T) {
	c := harness.New(t)
	server := c.StartServer()
	ctx := context.Background()
	fast, plain := snapshotClasses(t, c)
	node := &harness.Node{Name: "node-a", Root: t.TempDir()} // no node-agent: the test plays it
	ns := c.Namespace("shop")
	c.CreatePod(node, ns, "db", harness.VolumeSpec{Name: "data", Claim: "db-data", StorageClass: fast},
		harness.VolumeSpec{Name: "logs", Claim: "db-logs", StorageClass: plain}, harness.VolumeSpec{Name: "tmp"})
	createUnmountedClaim(t, c, ns, "archive", plain)

	moved := newMoveDataBackup(t, c, "moved", ns)
	waitBackup(t, c, moved, velerov1.BackupPhaseInProgress)
	var du velerov2alpha1.DataUpload
	var pvb velerov1.PodVolumeBackup
	t.Run("a backup sends each claim down the path it supports", func(t *testing.T) {
		vs := only(t, "VolumeSnapshot", volumeSnapshotsOf(t, c, ns, moved))
		du = only(t, "DataUpload", dataUploadsOf(t, c, moved))
		pvb = only(t, "PodVolumeBackup", podVolumeBackupsOf(t, c, moved))
		checkSnapshot(t, vs, moved, "db-data", c.Install+"-fast-snapshots")
		checkDataUpload(t, du, moved, vs.Name, ns, fast)
		if pvb.Spec.Volume != "logs" || pvb.Spec.Tags["pvc"] != "db-logs" {
			t.Errorf("PodVolumeBackup of volume %s (claim %s), want logs (db-logs)", pvb.Spec.Volume, pvb.Spec.Tags["pvc"])
		}
		s := moved.Status
		if s.DataUploads == nil || s.DataUploads.Total != 1 || s.PodVolumeBackups == nil || s.PodVolumeBackups.Total != 1 ||
			s.PodVolumeBackups.Skipped != 1 {
			t.Errorf("status counts: dataUploads %+v, podVolumeBackups %+v", s.DataUploads, s.PodVolumeBackups)
		}
		wantSkip := "claim " + ns + "/archive: no pod mounts it and the data mover cannot snapshot it: no VolumeSnapshotClass of driver " + plain
		if msg := skippedMessage(moved.Status.Conditions); !strings.Contains(msg, wantSkip) {
			t.Errorf("VolumesSkipped condition %q lacks %q", msg, wantSkip)
		}
	})

	t.Run("a restarted server makes nothing twice", func(t *testing.T) {
		// Lost the status write that followed the objects: the next server starts the backup again.
		server.Stop()
		if err := operation.PatchStatus(ctx, c.Client, moved, map[string]any{"phase": velerov1.BackupPhaseNew}); err != nil {
			t.Fatal(err)
		}
		server = c.StartServer()
		waitBackup(t, c, moved, velerov1.BackupPhaseInProgress)
		if n := len(volumeSnapshotsOf(t, c, ns, moved)); n != 1 {
			t.Errorf("%d VolumeSnapshots after the restart, want 1", n)
		}
		if again := only(t, "DataUpload", dataUploadsOf(t, c, moved)); again.UID != du.UID {
			t.Errorf("the DataUpload was re-created (UID %s, was %s)", again.UID, du.UID)
		}
		only(t, "PodVolumeBackup", podVolumeBackupsOf(t, c, moved))
	})

	rep := openDefault(t, c, harnessPassword)
	fsSnapshot := realSnapshot(t, rep, map[string]string{"backup": moved.Name, "backup-uid": string(moved.UID)})
	moverSnapshot := realSnapshot(t, rep, nil) // untagged: found by the ID its DataUpload reports
	t.Run("both paths complete the backup and the record says which made each snapshot", func(t *testing.T) {
		setPodVolumeStatus(t, c, &pvb, velerov1.PodVolumePhaseCompleted, fsSnapshot, "")
		setDataUploadStatus(t, c, &du, velerov2alpha1.DataMovePhaseCompleted, moverSnapshot, "")
		waitBackup(t, c, moved, velerov1.BackupPhaseCompleted)
		s := moved.Status
		if s.DataUploads == nil || s.DataUploads.Completed != 1 || s.PodVolumeBackups.Completed != 1 ||
			s.VolumeSnapshotsAttempted != 2 || s.VolumeSnapshotsCompleted != 2 || s.Progress == nil || s.Progress.ItemsBackedUp != 2 {
			t.Errorf("status: %+v", s)
		}
		var rec backuprecord.Record
		if err := openDefault(t, c, harnessPassword).LoadRecord(ctx, backuprecord.Kind, moved.Name, &rec); err != nil {
			t.Fatal(err)
		}
		byClaim := map[string]backuprecord.Volume{}
		for _, v := range rec.Volumes {
			byClaim[v.Claim] = v
		}
		if v := byClaim["db-data"]; v.Path != backuprecord.PathDataMover || v.Namespace != ns || v.SnapshotID != moverSnapshot ||
			v.Node != "node-a" || v.Bytes != 4096 || v.ClaimSpec == nil || v.ClaimSpec.StorageClassName == nil || *v.ClaimSpec.StorageClassName != fast {
			t.Errorf("record of db-data: %+v", v)
		}
		if v := byClaim["db-logs"]; v.Path != backuprecord.PathPodVolume || v.Pod != "db" || v.Volume != "logs" ||
			v.SnapshotID != fsSnapshot || v.ClaimSpec == nil {
			t.Errorf("record of db-logs: %+v", v)
		}
		if len(rec.Volumes) != 2 || len(rec.Skipped) != 1 || !strings.Contains(rec.Skipped[0], "archive") {
			t.Errorf("record: %d volumes, skipped %q", len(rec.Volumes), rec.Skipped)
		}
		if n := len(volumeSnapshotsOf(t, c, ns, moved)); n != 1 {
			t.Errorf("%d VolumeSnapshots: the one the DataUpload took over is the node-agent's to delete", n)
		}
	})

	t.Run("a failed DataUpload makes the backup PartiallyFailed", func(t *testing.T) {
		b := newMoveDataBackup(t, c, "partial", ns)
		waitBackup(t, c, b, velerov1.BackupPhaseInProgress)
		p := only(t, "PodVolumeBackup", podVolumeBackupsOf(t, c, b))
		d := only(t, "DataUpload", dataUploadsOf(t, c, b))
		setPodVolumeStatus(t, c, &p, velerov1.PodVolumePhaseCompleted, fsSnapshot, "")
		// A snapshot the server made but no DataUpload took over (say, refused as invalid) is the
		// server's to delete when the backup ends.
		stray := strayVolumeSnapshot(t, c, ns, b)
		setDataUploadStatus(t, c, &d, velerov2alpha1.DataMovePhaseFailed, "", "mover pod OOMKilled")
		waitBackup(t, c, b, velerov1.BackupPhasePartiallyFailed)
		if err := c.Client.Get(ctx, client.ObjectKeyFromObject(stray), stray); err == nil && stray.DeletionTimestamp.IsZero() {
			t.Errorf("VolumeSnapshot %s without a DataUpload is still there after the backup ended", stray.Name)
		}
		if n := len(volumeSnapshotsOf(t, c, ns, b)); n != 1 {
			t.Errorf("%d VolumeSnapshots of the backup, want the 1 its DataUpload took over", n)
		}
		if !strings.Contains(b.Status.FailureReason, "claim "+ns+"/db-data (DataUpload "+d.Name+"): Failed mover pod OOMKilled") {
			t.Errorf("failure reason %q does not name the failed DataUpload", b.Status.FailureReason)
		}
		if b.Status.DataUploads == nil || b.Status.DataUploads.Failed != 1 || b.Status.Errors != 1 {
			t.Errorf("status: dataUploads %+v, errors %d", b.Status.DataUploads, b.Status.Errors)
		}
	})

	t.Run("without snapshotMoveData nothing changes", func(t *testing.T) {
		b := newBackup(t, c, "fs-only", "default", ns)
		waitBackup(t, c, b, velerov1.BackupPhaseInProgress)
		if got := podVolumeBackupsOf(t, c, b); len(got) != 3 {
			t.Errorf("%d PodVolumeBackups, want 3 (db-data, db-logs, tmp)", len(got))
		}
		if got := dataUploadsOf(t, c, b); len(got) != 0 {
			t.Errorf("%d DataUploads without snapshotMoveData", len(got))
		}
		if got := volumeSnapshotsOf(t, c, ns, b); len(got) != 0 {
			t.Errorf("%d VolumeSnapshots without snapshotMoveData", len(got))
		}
		if b.Status.DataUploads != nil || strings.Contains(skippedMessage(b.Status.Conditions), "archive") {
			t.Errorf("status: dataUploads %+v, skipped %q", b.Status.DataUploads, skippedMessage(b.Status.Conditions))
		}
	})

	t.Run("a restore into an empty namespace re-creates the claims and fills them through DataDownloads", func(t *testing.T) {
		target := c.Namespace("shop-restored")
		rs := newRestore(t, c, "to-empty", moved.Name, ns, target)
		waitRestore(t, c, rs, velerov1.RestorePhaseInProgress)
		dds := dataDownloadsOf(t, c, rs)
		if len(dds) != 2 {
			t.Fatalf("%d DataDownloads, want 2", len(dds))
		}
		snapshots := map[string]string{"db-data": moverSnapshot, "db-logs": fsSnapshot}
		for _, dd := range dds {
			claim := dd.Spec.TargetVolume.PVC
			checkDataDownload(t, dd, rs, target, ns, snapshots[claim])
			checkRestoredClaim(t, c, rs, target, claim, map[string]string{"db-data": fast, "db-logs": plain}[claim])
		}
		if rs.Status.DataDownloads == nil || rs.Status.DataDownloads.Total != 2 || rs.Status.PodVolumeRestores.Total != 0 {
			t.Errorf("status counts: dataDownloads %+v, podVolumeRestores %+v", rs.Status.DataDownloads, rs.Status.PodVolumeRestores)
		}
		for i := range dds {
			setDataDownloadStatus(t, c, &dds[i], velerov2alpha1.DataMovePhaseCompleted)
		}
		waitRestore(t, c, rs, velerov1.RestorePhaseCompleted)
		if rs.Status.DataDownloads.Completed != 2 || rs.Status.Errors != 0 {
			t.Errorf("status: dataDownloads %+v, errors %d", rs.Status.DataDownloads, rs.Status.Errors)
		}
	})

	t.Run("a claim that exists without a pod is skipped, saying why", func(t *testing.T) {
		target := c.Namespace("shop-half")
		createUnmountedClaim(t, c, target, "db-logs", plain)
		rs := newRestore(t, c, "half", moved.Name, ns, target)
		waitRestore(t, c, rs, velerov1.RestorePhaseInProgress)
		dd := only(t, "DataDownload", dataDownloadsOf(t, c, rs))
		if dd.Spec.TargetVolume.PVC != "db-data" {
			t.Errorf("DataDownload for claim %s, want db-data", dd.Spec.TargetVolume.PVC)
		}
		setDataDownloadStatus(t, c, &dd, velerov2alpha1.DataMovePhaseCompleted)
		waitRestore(t, c, rs, velerov1.RestorePhasePartiallyFailed)
		want := "claim db-logs exists in " + target + " but no scheduled pod mounts it"
		if !strings.Contains(rs.Status.FailureReason, want) {
			t.Errorf("failure reason %q lacks %q", rs.Status.FailureReason, want)
		}
	})

	t.Run("a DeleteBackupRequest cancels a running DataUpload", func(t *testing.T) {
		b := newMoveDataBackup(t, c, "running", ns)
		waitBackup(t, c, b, velerov1.BackupPhaseInProgress)
		d := only(t, "DataUpload", dataUploadsOf(t, c, b))
		p := only(t, "PodVolumeBackup", podVolumeBackupsOf(t, c, b))
		setDataUploadStatus(t, c, &d, velerov2alpha1.DataMovePhaseInProgress, "", "")
		setPodVolumeStatus(t, c, &p, velerov1.PodVolumePhaseInProgress, "", "")
		dbr := &velerov1.DeleteBackupRequest{ObjectMeta: metav1.ObjectMeta{Namespace: c.Install, Name: "running-now"},
			Spec: velerov1.DeleteBackupRequestSpec{BackupName: b.Name}}
		if err := c.Client.Create(ctx, dbr); err != nil {
			t.Fatal(err)
		}
		c.Eventually(time.Minute, func() (bool, string) {
			_ = c.Client.Get(ctx, client.ObjectKeyFromObject(&d), &d)
			_ = c.Client.Get(ctx, client.ObjectKeyFromObject(&p), &p)
			return d.Spec.Cancel && p.Spec.Cancel, "not canceled yet"
		})
		c.Eventually(5*time.Second, func() (bool, string) { // still waiting for the node-agent
			_ = c.Client.Get(ctx, client.ObjectKeyFromObject(dbr), dbr)
			return dbr.Status.Phase == velerov1.DeleteBackupRequestPhaseInProgress, "request is " + string(dbr.Status.Phase)
		})
		setDataUploadStatus(t, c, &d, velerov2alpha1.DataMovePhaseCanceled, "", "canceled on request")
		setPodVolumeStatus(t, c, &p, velerov1.PodVolumePhaseCanceled, "", "canceled on request")
		c.Eventually(time.Minute, func() (bool, string) {
			_ = c.Client.Get(ctx, client.ObjectKeyFromObject(dbr), dbr)
			return dbr.Status.Phase == velerov1.DeleteBackupRequestPhaseProcessed, "request is " + string(dbr.Status.Phase)
		})
		if len(dbr.Status.Errors) > 0 {
			t.Errorf("errors: %q", dbr.Status.Errors)
		}
		if err := c.Client.Get(ctx, client.ObjectKeyFromObject(b), b); err == nil {
			t.Errorf("backup %s is still there, %s", b.Name, b.Status.Phase)
		}
	})

	t.Run("a DeleteBackupRequest deletes the snapshots of both paths", func(t *testing.T) {
		if dbr := deleteRequest(t, c, moved.Name); len(dbr.Status.Errors) > 0 {
			t.Fatalf("errors: %q", dbr.Status.Errors)
		}
		all, err := uploader.List(ctx, openDefault(t, c, harnessPassword), nil, true)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range all {
			if s.ID == fsSnapshot || s.ID == moverSnapshot {
				t.Errorf("snapshot %s (tags %v) of the deleted backup is still there", s.ID, s.Tags)
			}
		}
	})
}

// snapshotClasses creates two storage classes: one whose driver has a default
// VolumeSnapshotClass, one whose driver has none. Names are the cluster's own.
func snapshotClasses(t *testing.T, c *harness.Cluster) (withSnapshots, without string) {
	t.Helper()
	withSnapshots, without = c.Install+"-fast", c.Install+"-plain"
	objs := []client.Object{
		&storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: withSnapshots}, Provisioner: withSnapshots + ".csi.test"},
		&storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: without}, Provisioner: without + ".csi.test"},
		&snapshotv1.VolumeSnapshotClass{ObjectMeta: metav1.ObjectMeta{Name: withSnapshots + "-snapshots",
			Annotations: map[string]string{backup.AnnotationDefaultSnapshotClass: "true"}},
			Driver: withSnapshots + ".csi.test", DeletionPolicy: snapshotv1.VolumeSnapshotContentDelete},
		// Another driver's default class and a non-default class of the plain driver: neither counts.
		&snapshotv1.VolumeSnapshotClass{ObjectMeta: metav1.ObjectMeta{Name: without + "-not-default"},
			Driver: without + ".csi.test", DeletionPolicy: snapshotv1.VolumeSnapshotContentDelete},
	}
	for _, o := range objs {
		if err := c.Client.Create(context.Background(), o); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Client.Delete(context.Background(), o) })
	}
	return withSnapshots, without
}

func strayVolumeSnapshot(t *testing.T, c *harness.Cluster, ns string, b *velerov1.Backup) *snapshotv1.VolumeSnapshot {
	t.Helper()
	claim, class := "db-logs", c.Install+"-fast-snapshots"
	vs := &snapshotv1.VolumeSnapshot{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: b.Name + "-stray",
		Labels: map[string]string{velerov1.LabelBackupName: b.Name, velerov1.LabelBackupUID: string(b.UID)}},
		Spec: snapshotv1.VolumeSnapshotSpec{Source: snapshotv1.VolumeSnapshotSource{PersistentVolumeClaimName: &claim},
			VolumeSnapshotClassName: &class}}
	if err := c.Client.Create(context.Background(), vs); err != nil {
		t.Fatal(err)
	}
	return vs
}

func newMoveDataBackup(t *testing.T, c *harness.Cluster, name string, namespaces ...string) *velerov1.Backup {
	t.Helper()
	yes := true
	b := &velerov1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: c.Install, Name: name},
		Spec: velerov1.BackupSpec{IncludedNamespaces: namespaces, SnapshotMoveData: &yes,
			ItemOperationTimeout: shared.Duration{Duration: 90 * time.Minute},
			UploaderConfig:       &velerov1.UploaderConfigForBackup{ParallelFilesUpload: 3}}}
	if err := c.Client.Create(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	return b
}

func checkSnapshot(t *testing.T, vs snapshotv1.VolumeSnapshot, b *velerov1.Backup, claim, class string) {
	t.Helper()
	if vs.Name != backup.DataUploadName(b.Name, vs.Namespace, claim) || len(vs.Name) > 63 {
		t.Errorf("VolumeSnapshot name %s", vs.Name)
	}
	if vs.Labels[velerov1.LabelBackupName] != b.Name || vs.Labels[velerov1.LabelBackupUID] != string(b.UID) {
		t.Errorf("VolumeSnapshot labels %v", vs.Labels)
	}
	if src := vs.Spec.Source.PersistentVolumeClaimName; src == nil || *src != claim {
		t.Errorf("VolumeSnapshot spec.source.persistentVolumeClaimName %v, want %s", src, claim)
	}
	if cl := vs.Spec.VolumeSnapshotClassName; cl == nil || *cl != class {
		t.Errorf("VolumeSnapshot spec.volumeSnapshotClassName %v, want %s", cl, class)
	}
}

func checkDataUpload(t *testing.T, du velerov2alpha1.DataUpload, b *velerov1.Backup, vs, ns, storageClass string) {
	t.Helper()
	want := velerov2alpha1.DataUploadSpec{
		SnapshotType: velerov2alpha1.SnapshotTypeCSI,
		CSISnapshot: &velerov2alpha1.CSISnapshotSpec{VolumeSnapshot: vs, StorageClass: storageClass,
			SnapshotClass: storageClass + "-snapshots", Driver: storageClass + ".csi.test"},
		SourcePVC: "db-data", SourceNamespace: ns, BackupStorageLocation: "default", DataMover: "ferry",
		OperationTimeout: shared.Duration{Duration: 90 * time.Minute},
		DataMoverConfig:  map[string]string{"parallelFilesUpload": "3"},
	}
	if got := du.Spec; !equalJSON(t, got, want) {
		t.Errorf("DataUpload spec\n got %+v\nwant %+v", got, want)
	}
	if du.Namespace != b.Namespace || du.Labels[velerov1.LabelBackupName] != b.Name || du.Labels[velerov1.LabelBackupUID] != string(b.UID) ||
		du.Labels[velerov1.LabelPVCNamespaceName] != ns+".db-data" {
		t.Errorf("DataUpload %s/%s labels %v", du.Namespace, du.Name, du.Labels)
	}
	checkOwner(t, du.OwnerReferences, "Backup", b.Name, b.UID)
}

func checkDataDownload(t *testing.T, dd velerov2alpha1.DataDownload, rs *velerov1.Restore, target, source, snapshotID string) {
	t.Helper()
	want := velerov2alpha1.DataDownloadSpec{
		TargetVolume:          velerov2alpha1.TargetVolumeSpec{PVC: dd.Spec.TargetVolume.PVC, Namespace: target},
		BackupStorageLocation: "default", DataMover: "ferry", SnapshotID: snapshotID, SourceNamespace: source,
		OperationTimeout: shared.Duration{Duration: 4 * time.Hour}, SnapshotSize: 4096,
	}
	if !equalJSON(t, dd.Spec, want) {
		t.Errorf("DataDownload spec\n got %+v\nwant %+v", dd.Spec, want)
	}
	if dd.Labels[velerov1.LabelRestoreName] != rs.Name || dd.Labels[velerov1.LabelRestoreUID] != string(rs.UID) {
		t.Errorf("DataDownload labels %v", dd.Labels)
	}
	checkOwner(t, dd.OwnerReferences, "Restore", rs.Name, rs.UID)
}

func checkRestoredClaim(t *testing.T, c *harness.Cluster, rs *velerov1.Restore, ns, name, class string) {
	t.Helper()
	pvc := &corev1.PersistentVolumeClaim{}
	if err := c.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, pvc); err != nil {
		t.Fatalf("restored claim %s/%s: %v", ns, name, err)
	}
	want := map[string]string{velerov1.LabelDynamicPVRestore: restore.DynamicPVRestoreValue(string(rs.UID), ns, name)}
	if pvc.Spec.Selector == nil || !equalJSON(t, pvc.Spec.Selector.MatchLabels, want) || len(pvc.Spec.Selector.MatchExpressions) > 0 {
		t.Errorf("claim %s spec.selector %+v, want matchLabels %v", name, pvc.Spec.Selector, want)
	}
	if pvc.Spec.VolumeName != "" || pvc.Spec.DataSource != nil || pvc.Spec.DataSourceRef != nil {
		t.Errorf("claim %s: spec.volumeName %q, dataSource %v, dataSourceRef %v", name, pvc.Spec.VolumeName, pvc.Spec.DataSource, pvc.Spec.DataSourceRef)
	}
	if pvc.Spec.StorageClassName == nil || *pvc.Spec.StorageClassName != class {
		t.Errorf("claim %s: spec.storageClassName %v, want %s", name, pvc.Spec.StorageClassName, class)
	}
	for k := range pvc.Annotations {
		if strings.HasPrefix(k, "pv.kubernetes.io/") {
			t.Errorf("claim %s carries binding annotation %s", name, k)
		}
	}
}

func checkOwner(t *testing.T, refs []metav1.OwnerReference, kind, name string, uid types.UID) {
	t.Helper()
	if len(refs) != 1 || refs[0].Kind != kind || refs[0].Name != name || refs[0].UID != uid ||
		refs[0].Controller == nil || *refs[0].Controller || refs[0].BlockOwnerDeletion == nil || *refs[0].BlockOwnerDeletion {
		t.Errorf("ownerReferences %+v, want the %s %s, not as controller, not blocking deletion", refs, kind, name)
	}
}

func only[T any](t *testing.T, what string, items []T) T {
	t.Helper()
	if len(items) != 1 {
		t.Fatalf("%d %ss, want 1", len(items), what)
	}
	return items[0]
}

func volumeSnapshotsOf(t *testing.T, c *harness.Cluster, ns string, b *velerov1.Backup) []snapshotv1.VolumeSnapshot {
	t.Helper()
	list := &snapshotv1.VolumeSnapshotList{}
	if err := c.Client.List(context.Background(), list, client.InNamespace(ns), client.MatchingLabels{velerov1.LabelBackupUID: string(b.UID)}); err != nil {
		t.Fatal(err)
	}
	return list.Items
}

func dataUploadsOf(t *testing.T, c *harness.Cluster, b *velerov1.Backup) []velerov2alpha1.DataUpload {
	t.Helper()
	list := &velerov2alpha1.DataUploadList{}
	if err := c.Client.List(context.Background(), list, client.InNamespace(c.Install), client.MatchingLabels{velerov1.LabelBackupUID: string(b.UID)}); err != nil {
		t.Fatal(err)
	}
	return list.Items
}

func podVolumeBackupsOf(t *testing.T, c *harness.Cluster, b *velerov1.Backup) []velerov1.PodVolumeBackup {
	t.Helper()
	list := &velerov1.PodVolumeBackupList{}
	if err := c.Client.List(context.Background(), list, client.InNamespace(c.Install), client.MatchingLabels{velerov1.LabelBackupUID: string(b.UID)}); err != nil {
		t.Fatal(err)
	}
	return list.Items
}

func dataDownloadsOf(t *testing.T, c *harness.Cluster, rs *velerov1.Restore) []velerov2alpha1.DataDownload {
	t.Helper()
	list := &velerov2alpha1.DataDownloadList{}
	if err := c.Client.List(context.Background(), list, client.InNamespace(c.Install), client.MatchingLabels{velerov1.LabelRestoreUID: string(rs.UID)}); err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(list.Items, func(a, b velerov2alpha1.DataDownload) int { return strings.Compare(a.Name, b.Name) })
	return list.Items
}

// setDataUploadStatus writes what a node-agent would: the phase, and on completion the snapshot
// and its size.
func setDataUploadStatus(t *testing.T, c *harness.Cluster, du *velerov2alpha1.DataUpload, phase velerov2alpha1.DataMovePhase, snapshotID, message string) {
	t.Helper()
	fields := map[string]any{"phase": phase, "message": message, "node": "node-a"}
	if phase == velerov2alpha1.DataMovePhaseCompleted {
		fields["snapshotID"] = snapshotID
		fields["progress"] = shared.DataMoveOperationProgress{TotalBytes: 4096, BytesDone: 4096, TotalFiles: 2, FilesDone: 2}
	}
	if err := operation.PatchStatus(context.Background(), c.Client, du, fields); err != nil {
		t.Fatal(err)
	}
}

func setDataDownloadStatus(t *testing.T, c *harness.Cluster, dd *velerov2alpha1.DataDownload, phase velerov2alpha1.DataMovePhase) {
	t.Helper()
	if err := operation.PatchStatus(context.Background(), c.Client, dd, map[string]any{"phase": phase, "node": "node-a"}); err != nil {
		t.Fatal(err)
	}
}

func setPodVolumeStatus(t *testing.T, c *harness.Cluster, pvb *velerov1.PodVolumeBackup, phase velerov1.PodVolumePhase, snapshotID, message string) {
	t.Helper()
	fields := map[string]any{"phase": phase, "message": message}
	if phase == velerov1.PodVolumePhaseCompleted {
		fields["snapshotID"] = snapshotID
		fields["progress"] = shared.DataMoveOperationProgress{TotalBytes: 4096, BytesDone: 4096}
	}
	if err := operation.PatchStatus(context.Background(), c.Client, pvb, fields); err != nil {
		t.Fatal(err)
	}
}

// realSnapshot writes a small snapshot into the repository, as a node-agent would, and returns
// its ID.
func realSnapshot(t *testing.T, rep *repository.Repository, tags map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "file"), []byte(strings.Repeat("x", 4096)), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := uploader.Backup(context.Background(), rep, dir, uploader.BackupOptions{Tags: tags, Source: "/" + filepath.Base(dir)})
	if err != nil {
		t.Fatal(err)
	}
	return res.SnapshotID
}

func skippedMessage(conds []metav1.Condition) string {
	for _, c := range conds {
		if c.Type == "VolumesSkipped" {
			return c.Message
		}
	}
	return ""
}

// equalJSON compares two values as the API server would see them.
func equalJSON(t *testing.T, a, b any) bool {
	t.Helper()
	ja, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	jb, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return string(ja) == string(jb)
}
