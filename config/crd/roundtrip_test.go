package crd_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferry-backup/ferry/api/shared"
	velerov1 "github.com/ferry-backup/ferry/api/v1"
	velerov2alpha1 "github.com/ferry-backup/ferry/api/v2alpha1"
	"github.com/ferry-backup/ferry/internal/testenv"
)

// kindCase is one kind with a valid object, a status to write, and a way to read the status back.
type kindCase struct {
	name      string
	newObj    func() client.Object
	valid     func(ns, name string) client.Object
	setStatus func(client.Object)
	status    func(client.Object) any
}

var now = metav1.NewTime(time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC))

func kindCases() []kindCase {
	progress := shared.DataMoveOperationProgress{TotalBytes: 100, BytesDone: 40, TotalFiles: 3, FilesDone: 1}
	pod := corev1.ObjectReference{Kind: "Pod", Namespace: "app", Name: "web-0", UID: "4c1d"}
	meta := func(ns, name string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"ferry.test/kind": "roundtrip"}}
	}
	return []kindCase{
		{
			name:   "BackupStorageLocation",
			newObj: func() client.Object { return &velerov1.BackupStorageLocation{} },
			valid: func(ns, name string) client.Object {
				return &velerov1.BackupStorageLocation{ObjectMeta: meta(ns, name), Spec: velerov1.BackupStorageLocationSpec{
					Provider: velerov1.ProviderFilesystem, Config: map[string]string{"path": "/var/ferry"},
					StorageType: velerov1.StorageType{ObjectStorage: &velerov1.ObjectStorageLocation{Bucket: "backups"}},
				}}
			},
			setStatus: func(o client.Object) {
				o.(*velerov1.BackupStorageLocation).Status = velerov1.BackupStorageLocationStatus{
					Phase: velerov1.BackupStorageLocationPhaseAvailable, LastValidationTime: &now}
			},
			status: func(o client.Object) any { return o.(*velerov1.BackupStorageLocation).Status },
		},
		{
			name:   "BackupRepository",
			newObj: func() client.Object { return &velerov1.BackupRepository{} },
			valid: func(ns, name string) client.Object {
				return &velerov1.BackupRepository{ObjectMeta: meta(ns, name), Spec: velerov1.BackupRepositorySpec{
					VolumeNamespace: "app", BackupStorageLocation: "default", RepositoryType: velerov1.RepositoryTypeKopia,
					MaintenanceFrequency: shared.Duration{Duration: time.Hour},
				}}
			},
			setStatus: func(o client.Object) {
				o.(*velerov1.BackupRepository).Status = velerov1.BackupRepositoryStatus{
					Phase: velerov1.BackupRepositoryPhaseReady, LastMaintenanceTime: &now,
					RecentMaintenance: []velerov1.BackupRepositoryMaintenanceStatus{{
						Result: velerov1.BackupRepositoryMaintenanceSucceeded, StartTimestamp: &now, CompleteTimestamp: &now, Message: "quick"}},
				}
			},
			status: func(o client.Object) any { return o.(*velerov1.BackupRepository).Status },
		},
		{
			name:   "Backup",
			newObj: func() client.Object { return &velerov1.Backup{} },
			valid: func(ns, name string) client.Object {
				return &velerov1.Backup{ObjectMeta: meta(ns, name), Spec: velerov1.BackupSpec{
					IncludedNamespaces: []string{"app"}, TTL: shared.Duration{Duration: 720 * time.Hour}}}
			},
			setStatus: func(o client.Object) {
				o.(*velerov1.Backup).Status = velerov1.BackupStatus{Phase: velerov1.BackupPhaseInProgress, StartTimestamp: &now,
					PodVolumeBackups: &velerov1.VolumeOperationCounts{Total: 2, Completed: 1}}
			},
			status: func(o client.Object) any { return o.(*velerov1.Backup).Status },
		},
		{
			name:   "Restore",
			newObj: func() client.Object { return &velerov1.Restore{} },
			valid: func(ns, name string) client.Object {
				return &velerov1.Restore{ObjectMeta: meta(ns, name), Spec: velerov1.RestoreSpec{
					BackupName: "nightly", NamespaceMapping: map[string]string{"app": "app-restored"}}}
			},
			setStatus: func(o client.Object) {
				o.(*velerov1.Restore).Status = velerov1.RestoreStatus{Phase: velerov1.RestorePhaseCompleted, CompletionTimestamp: &now}
			},
			status: func(o client.Object) any { return o.(*velerov1.Restore).Status },
		},
		{
			name:   "PodVolumeBackup",
			newObj: func() client.Object { return &velerov1.PodVolumeBackup{} },
			valid: func(ns, name string) client.Object {
				return &velerov1.PodVolumeBackup{ObjectMeta: meta(ns, name), Spec: velerov1.PodVolumeBackupSpec{
					Node: "node-a", Pod: pod, Volume: "data", BackupStorageLocation: "default", UploaderType: velerov1.UploaderTypeKopia}}
			},
			setStatus: func(o client.Object) {
				o.(*velerov1.PodVolumeBackup).Status = velerov1.PodVolumeBackupStatus{
					Phase: velerov1.PodVolumePhaseInProgress, StartTimestamp: &now, Progress: progress,
					Conditions: []metav1.Condition{{Type: "Accepted", Status: metav1.ConditionTrue, Reason: "OnNode", LastTransitionTime: now}}}
			},
			status: func(o client.Object) any { return o.(*velerov1.PodVolumeBackup).Status },
		},
		{
			name:   "PodVolumeRestore",
			newObj: func() client.Object { return &velerov1.PodVolumeRestore{} },
			valid: func(ns, name string) client.Object {
				return &velerov1.PodVolumeRestore{ObjectMeta: meta(ns, name), Spec: velerov1.PodVolumeRestoreSpec{
					Pod: pod, Volume: "data", BackupStorageLocation: "default", SnapshotID: "k1234", SourceNamespace: "app"}}
			},
			setStatus: func(o client.Object) {
				o.(*velerov1.PodVolumeRestore).Status = velerov1.PodVolumeRestoreStatus{
					Phase: velerov1.PodVolumePhaseCompleted, Node: "node-a", CompletionTimestamp: &now, Progress: progress}
			},
			status: func(o client.Object) any { return o.(*velerov1.PodVolumeRestore).Status },
		},
		{
			name:   "DataUpload",
			newObj: func() client.Object { return &velerov2alpha1.DataUpload{} },
			valid: func(ns, name string) client.Object {
				return &velerov2alpha1.DataUpload{ObjectMeta: meta(ns, name), Spec: velerov2alpha1.DataUploadSpec{
					SnapshotType: velerov2alpha1.SnapshotTypeCSI, CSISnapshot: &velerov2alpha1.CSISnapshotSpec{VolumeSnapshot: "snap-1", StorageClass: "fast"},
					SourcePVC: "data", SourceNamespace: "app", BackupStorageLocation: "default", DataMover: velerov2alpha1.DataMoverFerry,
					OperationTimeout: shared.Duration{Duration: 10 * time.Minute}}}
			},
			setStatus: func(o client.Object) {
				o.(*velerov2alpha1.DataUpload).Status = velerov2alpha1.DataUploadStatus{
					Phase: velerov2alpha1.DataMovePhaseCompleted, SnapshotID: "k5678", Node: "node-b", AcceptedByNode: "node-a", Progress: progress}
			},
			status: func(o client.Object) any { return o.(*velerov2alpha1.DataUpload).Status },
		},
		{
			name:   "DataDownload",
			newObj: func() client.Object { return &velerov2alpha1.DataDownload{} },
			valid: func(ns, name string) client.Object {
				return &velerov2alpha1.DataDownload{ObjectMeta: meta(ns, name), Spec: velerov2alpha1.DataDownloadSpec{
					TargetVolume: velerov2alpha1.TargetVolumeSpec{PVC: "data", Namespace: "app"}, BackupStorageLocation: "default",
					SnapshotID: "k5678", SourceNamespace: "app", OperationTimeout: shared.Duration{Duration: 10 * time.Minute}}}
			},
			setStatus: func(o client.Object) {
				o.(*velerov2alpha1.DataDownload).Status = velerov2alpha1.DataDownloadStatus{
					Phase: velerov2alpha1.DataMovePhaseFailed, Message: "snapshot k5678 not found", CompletionTimestamp: &now}
			},
			status: func(o client.Object) any { return o.(*velerov2alpha1.DataDownload).Status },
		},
		{
			name:   "Schedule",
			newObj: func() client.Object { return &velerov1.Schedule{} },
			valid: func(ns, name string) client.Object {
				return &velerov1.Schedule{ObjectMeta: meta(ns, name), Spec: velerov1.ScheduleSpec{Schedule: "0 2 * * *",
					Template: velerov1.BackupSpec{IncludedNamespaces: []string{"app"}, TTL: shared.Duration{Duration: 720 * time.Hour}}}}
			},
			setStatus: func(o client.Object) {
				o.(*velerov1.Schedule).Status = velerov1.ScheduleStatus{Phase: velerov1.SchedulePhaseEnabled, LastBackup: &now}
			},
			status: func(o client.Object) any { return o.(*velerov1.Schedule).Status },
		},
	}
}

// TestEveryKindRoundTrips creates each kind, writes its status through the status subresource,
// checks that a status written through the main resource is ignored, and lists by label.
func TestEveryKindRoundTrips(t *testing.T) {
	c := testenv.Get(t).Client
	ctx := testenv.Context(t)
	for _, kc := range kindCases() {
		t.Run(kc.name, func(t *testing.T) {
			ns := newNamespace(t)
			obj := kc.valid(ns, "one")
			if err := c.Create(ctx, obj); err != nil {
				t.Fatalf("create: %v", err)
			}
			emptyStatus := kc.status(kc.newObj())

			// The main resource ignores status: the subresource owns it.
			kc.setStatus(obj)
			wantStatus := kc.status(obj)
			if err := c.Update(ctx, obj); err != nil {
				t.Fatalf("update: %v", err)
			}
			got := kc.newObj()
			if err := c.Get(ctx, client.ObjectKeyFromObject(obj), got); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(emptyStatus, kc.status(got)); diff != "" {
				t.Errorf("status written through the main resource was stored (-want +got):\n%s", diff)
			}

			kc.setStatus(got)
			if err := c.Status().Update(ctx, got); err != nil {
				t.Fatalf("status update: %v", err)
			}
			fresh := kc.newObj()
			if err := c.Get(ctx, client.ObjectKeyFromObject(obj), fresh); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(wantStatus, kc.status(fresh)); diff != "" {
				t.Errorf("status after the subresource update (-want +got):\n%s", diff)
			}

			if err := c.Create(ctx, kc.valid(ns, "two")); err != nil {
				t.Fatalf("create second: %v", err)
			}
			unlabelled := kc.valid(ns, "three")
			unlabelled.SetLabels(nil)
			if err := c.Create(ctx, unlabelled); err != nil {
				t.Fatalf("create third: %v", err)
			}
			if n := countListed(t, kc, ns, client.MatchingLabels{"ferry.test/kind": "roundtrip"}); n != 2 {
				t.Errorf("list by label found %d objects, want 2", n)
			}
		})
	}
}

// TestPodVolumeOperationsSelectableByNode lists pod volume operations by spec.node on the server
// side, which is how a node-agent restricts its cache to its own node.
func TestPodVolumeOperationsSelectableByNode(t *testing.T) {
	c := testenv.Get(t).Client
	ctx := testenv.Context(t)
	for _, kc := range kindCases() {
		if kc.name != "PodVolumeBackup" && kc.name != "PodVolumeRestore" {
			continue
		}
		t.Run(kc.name, func(t *testing.T) {
			ns := newNamespace(t)
			for _, n := range []struct{ name, node string }{{"a1", "node-a"}, {"a2", "node-a"}, {"b1", "node-b"}} {
				obj := kc.valid(ns, n.name)
				switch o := obj.(type) {
				case *velerov1.PodVolumeBackup:
					o.Spec.Node = n.node
				case *velerov1.PodVolumeRestore:
					o.Spec.Node = n.node
				}
				if err := c.Create(ctx, obj); err != nil {
					t.Fatalf("create %s: %v", n.name, err)
				}
			}
			sel := client.MatchingFieldsSelector{Selector: fields.OneTermEqualSelector("spec.node", "node-a")}
			if n := countListed(t, kc, ns, sel); n != 2 {
				t.Errorf("field selector spec.node=node-a found %d objects, want 2", n)
			}
		})
	}
}

func countListed(t *testing.T, kc kindCase, ns string, opt client.ListOption) int {
	t.Helper()
	gvk, err := testenv.Get(t).Client.GroupVersionKindFor(kc.newObj())
	if err != nil {
		t.Fatal(err)
	}
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
	if err := testenv.Get(t).Client.List(testenv.Context(t), list, client.InNamespace(ns), opt); err != nil {
		t.Fatalf("list: %v", err)
	}
	return len(list.Items)
}
