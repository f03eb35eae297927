package backup

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/operation"
	"github.com/ferry-backup/ferry/internal/repoaccess"
	"github.com/ferry-backup/ferry/internal/testenv"
)

// In Velero's layout a backup gets one BackupRepository per volume namespace, named and labelled
// as Velero 1.18 makes it, besides the location's (which holds the record); it starts no volume
// before each is Ready, and reuses one Velero made under another name.
func TestABackupInVelerosLayoutEnsuresARepositoryPerVolumeNamespace(t *testing.T) {
	env := testenv.Get(t)
	ctx := testenv.Context(t)
	install := testenv.Namespace(t, "nsrepo")
	apps := []string{testenv.Namespace(t, "nsrepo-a"), testenv.Namespace(t, "nsrepo-b")}
	bsl := &velerov1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Namespace: install, Name: "default",
		Annotations: map[string]string{repoaccess.LayoutAnnotation: repoaccess.LayoutVelero}},
		Spec: velerov1.BackupStorageLocationSpec{Provider: velerov1.ProviderFilesystem, Config: map[string]string{"path": "/nonexistent"},
			StorageType: velerov1.StorageType{ObjectStorage: &velerov1.ObjectStorageLocation{Bucket: "b"}}}}
	root := &velerov1.BackupRepository{ObjectMeta: metav1.ObjectMeta{Namespace: install, Name: RepositoryName("default")},
		Spec: velerov1.BackupRepositorySpec{BackupStorageLocation: "default", RepositoryType: velerov1.RepositoryTypeKopia}}
	// Velero made the second namespace's repository already, under a generated name.
	velero := &velerov1.BackupRepository{ObjectMeta: metav1.ObjectMeta{Namespace: install, Name: apps[1] + "-default-kopia-x7k2p"},
		Spec: velerov1.BackupRepositorySpec{BackupStorageLocation: "default", VolumeNamespace: apps[1], RepositoryType: velerov1.RepositoryTypeKopia}}
	no := false
	b := &velerov1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: install, Name: "nightly"},
		Spec: velerov1.BackupSpec{StorageLocation: "default", IncludedNamespaces: apps, DefaultVolumesToFsBackup: &no}}
	objs := []client.Object{bsl, root, velero, b}
	for _, ns := range apps {
		objs = append(objs, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app",
			Annotations: map[string]string{velerov1.AnnotationBackupVolumes: "data"}},
			Spec: corev1.PodSpec{NodeName: "node-1", Containers: []corev1.Container{{Name: "c", Image: "busybox"}},
				Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}}})
	}
	for _, obj := range objs {
		if err := env.Client.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	for _, obj := range objs[4:] {
		if err := operation.PatchStatus(ctx, env.Client, obj, map[string]any{"phase": corev1.PodRunning}); err != nil {
			t.Fatal(err)
		}
	}
	for _, br := range []*velerov1.BackupRepository{root, velero} {
		if err := operation.PatchStatus(ctx, env.Client, br, map[string]any{"phase": velerov1.BackupRepositoryPhaseReady}); err != nil {
			t.Fatal(err)
		}
	}
	r := &Reconciler{Client: env.Client, Cluster: env.Client, Recorder: record.NewFakeRecorder(10),
		Clock: clocktesting.NewFakePassiveClock(b.CreationTimestamp.Add(time.Second))}
	res, err := r.start(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if res.RequeueAfter == 0 {
		t.Error("the backup did not wait for the new namespace repository")
	}
	created := &velerov1.BackupRepository{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: install, Name: apps[0] + "-default-kopia"}, created); err != nil {
		t.Fatalf("the repository of namespace %s: %v", apps[0], err)
	}
	wantLabels := map[string]string{"velero.io/storage-location": "default", "velero.io/volume-namespace": apps[0], "velero.io/repository-type": "kopia"}
	for k, v := range wantLabels {
		if created.Labels[k] != v {
			t.Errorf("label %s is %q, want %q", k, created.Labels[k], v)
		}
	}
	if s := created.Spec; s.BackupStorageLocation != "default" || s.VolumeNamespace != apps[0] || s.RepositoryType != "kopia" {
		t.Errorf("spec %+v, want location default, volume namespace %s, type kopia", s, apps[0])
	}
	list := &velerov1.BackupRepositoryList{}
	if err := env.Client.List(ctx, list, client.InNamespace(install)); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 3 {
		t.Errorf("%d BackupRepositories, want 3 (the location's and one per namespace; Velero's reused)", len(list.Items))
	}
	pvbs := &velerov1.PodVolumeBackupList{}
	if err := env.Client.List(ctx, pvbs, client.InNamespace(install)); err != nil || len(pvbs.Items) != 0 {
		t.Fatalf("before the repositories are Ready: %d PodVolumeBackups (%v), want none", len(pvbs.Items), err)
	}
	if err := operation.PatchStatus(ctx, env.Client, created, map[string]any{"phase": velerov1.BackupRepositoryPhaseReady}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.start(ctx, b); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.List(ctx, pvbs, client.InNamespace(install)); err != nil || len(pvbs.Items) != 2 {
		t.Fatalf("once Ready: %d PodVolumeBackups (%v), want 2", len(pvbs.Items), err)
	}
}
