package e2e

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferry-backup/ferry/api/shared"
	velerov1 "github.com/ferry-backup/ferry/api/v1"
	velerov2alpha1 "github.com/ferry-backup/ferry/api/v2alpha1"
	"github.com/ferry-backup/ferry/internal/exposer"
)

// TestDataMoverMovesAClaimAsVeleroHandsItOver drives Ferry's node-agent the way a Velero server
// hands data movement to it (spec.datamover: ferry): a VolumeSnapshot of the application's claim
// and a DataUpload; the namespace is deleted; a new, unbound claim with Velero's selector and a
// DataDownload; then the application's manifests are applied again and its pod finds the data.
// Every intermediate object (mover pods, claims, snapshots, contents) is gone at the end.
func TestDataMoverMovesAClaimAsVeleroHandsItOver(t *testing.T) {
	c, ns := story(t, "mover")
	ctx := t.Context()
	app := c.NewApp(ns)
	app.Volumes = []AppVolume{{App: "web", Dir: "/content"}}
	t.Cleanup(app.Discard)
	must(t, app.Deploy(ctx))
	must(t, app.Fill(ctx, 300, 48))
	want, err := app.Describe(ctx)
	must(t, err)
	files, size := Count(want)

	// A Velero server makes sure the repository exists before it creates DataUploads; the mover
	// pods only open it.
	must(t, c.EnsureRepository(ctx, "default"))
	watch := c.WatchKubectl(ctx, "get", "datauploads", "-n", InstallNamespace, "-w")
	vs, err := c.SnapshotClaim(ctx, ns, "web-content", "web-content-snap")
	must(t, err)
	du := &velerov2alpha1.DataUpload{ObjectMeta: metav1.ObjectMeta{Namespace: InstallNamespace, Name: ns + "-up"},
		Spec: velerov2alpha1.DataUploadSpec{
			SnapshotType: velerov2alpha1.SnapshotTypeCSI, SourcePVC: "web-content", SourceNamespace: ns,
			CSISnapshot: &velerov2alpha1.CSISnapshotSpec{VolumeSnapshot: vs.Name, StorageClass: c.Env["CLUSTER_STORAGE_CLASS"],
				SnapshotClass: "csi-hostpath-snapclass", Driver: "hostpath.csi.k8s.io"},
			DataMover: velerov2alpha1.DataMoverFerry, BackupStorageLocation: "default",
			OperationTimeout: shared.Duration{Duration: 10 * time.Minute},
		}}
	created := time.Now()
	must(t, c.Client.Create(ctx, du))
	must(t, c.WaitVolume(ctx, du, 5*time.Minute))
	if du.Status.Phase != velerov2alpha1.DataMovePhaseCompleted || du.Status.SnapshotID == "" {
		t.Fatalf("DataUpload %s: %s %q, snapshot %q", du.Name, du.Status.Phase, du.Status.Message, du.Status.SnapshotID)
	}
	if du.Status.AcceptedByNode != c.Node || du.Status.Node != c.Node || du.Status.Progress.TotalBytes < size || du.Status.Progress.BytesDone != du.Status.Progress.TotalBytes {
		t.Errorf("DataUpload %s status: accepted by %q, node %q, progress %+v; want %s and at least %d bytes", du.Name,
			du.Status.AcceptedByNode, du.Status.Node, du.Status.Progress, c.Node, size)
	}
	t.Logf("DataUpload %s: %d files, %d bytes in %s from creation (InProgress after %s): %s", du.Name, files, size,
		du.Status.CompletionTimestamp.Sub(created).Round(time.Second), du.Status.StartTimestamp.Sub(created).Round(time.Second), du.Status.Message)
	events, err := c.MoverEvents(ctx, du)
	must(t, err)
	if joined := strings.Join(events, "\n"); !strings.Contains(joined, exposer.ReasonStarted+": ") ||
		!strings.Contains(joined, exposer.ReasonCompleted+": snapshot "+du.Status.SnapshotID) {
		t.Errorf("the mover's Events on DataUpload %s lack Started and Completed with the snapshot:\n%s", du.Name, joined)
	}
	must(t, c.WaitNoLeftovers(ctx, ns, 2*time.Minute))

	// Restore into an empty namespace: the claim comes first, unbound, and the pods after.
	must(t, app.Delete(ctx))
	_, err = c.Kubectl(ctx, "", "create", "namespace", ns)
	must(t, err)
	class := c.Env["CLUSTER_STORAGE_CLASS"]
	target := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-content"},
		Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: &class, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{exposer.LabelDynamicPVRestore: ns + "-web"}},
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(app.ClaimSize)}}}}
	must(t, c.Client.Create(ctx, target))
	dd := &velerov2alpha1.DataDownload{ObjectMeta: metav1.ObjectMeta{Namespace: InstallNamespace, Name: ns + "-down"},
		Spec: velerov2alpha1.DataDownloadSpec{
			TargetVolume: velerov2alpha1.TargetVolumeSpec{PVC: "web-content", Namespace: ns}, BackupStorageLocation: "default",
			DataMover: velerov2alpha1.DataMoverFerry, SnapshotID: du.Status.SnapshotID, SourceNamespace: ns, SnapshotSize: du.Status.Progress.TotalBytes,
			OperationTimeout: shared.Duration{Duration: 10 * time.Minute},
		}}
	must(t, c.Client.Create(ctx, dd))
	must(t, c.WaitVolume(ctx, dd, 5*time.Minute))
	if dd.Status.Phase != velerov2alpha1.DataMovePhaseCompleted {
		t.Fatalf("DataDownload %s: %s %q", dd.Name, dd.Status.Phase, dd.Status.Message)
	}
	must(t, c.Client.Get(ctx, client.ObjectKeyFromObject(target), target))
	if target.Status.Phase != corev1.ClaimBound {
		t.Fatalf("claim %s/%s is %s after the DataDownload, want Bound", ns, target.Name, target.Status.Phase)
	}
	t.Logf("DataDownload %s: %s; claim bound to %s", dd.Name, dd.Status.Message, target.Spec.VolumeName)
	must(t, app.Deploy(ctx))
	got, err := app.Describe(ctx)
	must(t, err)
	if diff := Compare(want, got); diff != "" {
		t.Fatalf("the restored claim differs from the backed-up one:\n%s", diff)
	}
	must(t, c.WaitNoLeftovers(ctx, ns, 2*time.Minute))
	t.Logf("kubectl get datauploads -n %s -w:\n%s", InstallNamespace, indent(watch()))
}

// TestBackupMovesSnapshotsAndRestoresIntoAnEmptyNamespace is the data mover as a Ferry user runs
// it: a Backup with snapshotMoveData moves both CSI claims through DataUploads while the pod's
// annotated emptyDir goes through a PodVolumeBackup, in one Backup; the namespace is deleted; the
// Restore re-creates it and both claims, filled by DataDownloads, before any pod exists; the
// application's manifests applied afterwards find their data. Nothing is left behind.
func TestBackupMovesSnapshotsAndRestoresIntoAnEmptyNamespace(t *testing.T) {
	c, ns := story(t, "moved")
	ctx := t.Context()
	app := c.NewApp(ns)
	// web-content's class binds late, as most production classes do: the claim made for the
	// restore and the re-created target claim bind only when the mover pod and then the
	// application's pod use them.
	app.WebClass = c.LateBindingClass(t, ns+"-late")
	t.Cleanup(app.Discard)
	must(t, app.Deploy(ctx))
	must(t, app.Fill(ctx, 200, 16))
	want, err := app.Describe(ctx)
	must(t, err)
	shop, err := app.Pod(ctx, "shop")
	must(t, err)
	_, err = c.Kubectl(ctx, "", "annotate", "pod", "-n", ns, shop, "backup.velero.io/backup-volumes=cache")
	must(t, err)

	b, err := c.Backup(ctx, ns, func(b *velerov1.Backup) {
		yes := true
		b.Spec.DefaultVolumesToFsBackup, b.Spec.SnapshotMoveData = nil, &yes
	}, ns)
	must(t, err)
	must(t, c.WaitBackup(ctx, b, 5*time.Minute))
	if b.Status.Phase != velerov1.BackupPhaseCompleted {
		t.Fatalf("backup %s: %s: %s", b.Name, b.Status.Phase, b.Status.FailureReason)
	}
	dus := &velerov2alpha1.DataUploadList{}
	must(t, c.Client.List(ctx, dus, client.InNamespace(InstallNamespace), client.MatchingLabels{velerov1.LabelBackupName: b.Name}))
	pvbs, err := c.PodVolumeBackups(ctx, b.Name)
	must(t, err)
	var claims []string
	for _, du := range dus.Items {
		claims = append(claims, du.Spec.SourcePVC)
		if du.Status.Phase != velerov2alpha1.DataMovePhaseCompleted || du.Status.SnapshotID == "" {
			t.Errorf("DataUpload %s of %s: %s %q", du.Name, du.Spec.SourcePVC, du.Status.Phase, du.Status.Message)
		}
	}
	if len(dus.Items) != 2 || len(pvbs) != 1 || pvbs[0].Spec.Volume != "cache" {
		t.Fatalf("backup %s: DataUploads of %v and %d PodVolumeBackups; want the two claims moved and the emptyDir by the file-system path", b.Name, claims, len(pvbs))
	}
	t.Logf("backup %s: claims %v through the data mover, emptyDir cache through PodVolumeBackup %s", b.Name, claims, pvbs[0].Name)
	must(t, c.WaitNoLeftovers(ctx, ns, 2*time.Minute))

	must(t, app.Delete(ctx))
	r, err := c.Restore(ctx, ns+"-restore", b.Name)
	must(t, err)
	must(t, c.WaitRestore(ctx, r, 5*time.Minute))
	dds := &velerov2alpha1.DataDownloadList{}
	must(t, c.Client.List(ctx, dds, client.InNamespace(InstallNamespace), client.MatchingLabels{velerov1.LabelRestoreName: r.Name}))
	for _, dd := range dds.Items {
		if dd.Status.Phase != velerov2alpha1.DataMovePhaseCompleted {
			t.Errorf("DataDownload %s of %s: %s %q", dd.Name, dd.Spec.TargetVolume.PVC, dd.Status.Phase, dd.Status.Message)
		}
	}
	if len(dds.Items) != 2 {
		t.Fatalf("restore %s (%s: %s): %d DataDownloads, want one per claim", r.Name, r.Status.Phase, r.Status.FailureReason, len(dds.Items))
	}
	t.Logf("restore %s into the deleted namespace: %s; %s", r.Name, r.Status.Phase, r.Status.FailureReason)
	must(t, app.Deploy(ctx))
	got, err := app.Describe(ctx)
	must(t, err)
	// The emptyDir lives only inside its pod: with no pod at restore time it starts empty.
	cache := AppVolume{App: "shop", Dir: "/cache"}
	if got[cache] != "" {
		t.Errorf("the emptyDir of the new pod is not empty:\n%s", got[cache])
	}
	delete(want, cache)
	delete(got, cache)
	if diff := Compare(want, got); diff != "" {
		t.Fatalf("the claims restored into the empty namespace differ:\n%s", diff)
	}
	must(t, c.WaitNoLeftovers(ctx, ns, 2*time.Minute))

	// The same backup into a namespace that never existed, by namespaceMapping.
	mapped := c.NewApp(ns + "-mapped")
	mapped.WebClass = app.WebClass
	t.Cleanup(mapped.Discard)
	rm := &velerov1.Restore{ObjectMeta: metav1.ObjectMeta{Namespace: InstallNamespace, Name: ns + "-mapped"},
		Spec: velerov1.RestoreSpec{BackupName: b.Name, NamespaceMapping: map[string]string{ns: mapped.Namespace}}}
	must(t, c.Client.Create(ctx, rm))
	must(t, c.WaitRestore(ctx, rm, 5*time.Minute))
	if rm.Status.Phase != velerov1.RestorePhasePartiallyFailed && rm.Status.Phase != velerov1.RestorePhaseCompleted {
		t.Fatalf("restore %s into %s: %s: %s", rm.Name, mapped.Namespace, rm.Status.Phase, rm.Status.FailureReason)
	}
	must(t, mapped.Deploy(ctx))
	got, err = mapped.Describe(ctx)
	must(t, err)
	delete(got, cache)
	if diff := Compare(want, got); diff != "" {
		t.Fatalf("the claims restored into the mapped namespace %s differ:\n%s", mapped.Namespace, diff)
	}
	t.Logf("restore %s into the mapped namespace %s: %s", rm.Name, mapped.Namespace, rm.Status.Phase)
	must(t, c.WaitNoLeftovers(ctx, mapped.Namespace, 2*time.Minute))
}
