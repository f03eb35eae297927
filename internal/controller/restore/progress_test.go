package restore

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Run(m) }

// The Restore sums up its PodVolumeRestores when their phase changes: their progress ticks make
// the controller write nothing.
func TestRestoreProgressTicksWriteNothing(t *testing.T) {
	env := testenv.Get(t)
	ctx := testenv.Context(t)
	ns := testenv.Namespace(t, "restore-progress")
	rs := &velerov1.Restore{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "nightly-restore"},
		Spec: velerov1.RestoreSpec{BackupName: "nightly"}}
	if err := env.Client.Create(ctx, rs); err != nil {
		t.Fatal(err)
	}
	rs.Status = velerov1.RestoreStatus{Phase: velerov1.RestorePhaseInProgress, PodVolumeRestores: &velerov1.VolumeOperationCounts{Total: 2},
		Progress: &velerov1.RestoreProgress{TotalItems: 2}}
	if err := env.Client.Status().Update(ctx, rs); err != nil {
		t.Fatal(err)
	}
	var pvrs []*velerov1.PodVolumeRestore
	for _, name := range []string{"web", "db"} {
		pvr := &velerov1.PodVolumeRestore{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: rs.Name + "-" + name,
			Labels: map[string]string{velerov1.LabelRestoreName: rs.Name}},
			Spec: velerov1.PodVolumeRestoreSpec{Pod: corev1.ObjectReference{Kind: "Pod", Namespace: "app", Name: name}, Volume: "data",
				BackupStorageLocation: "default", SnapshotID: "k1", SourceNamespace: "app", UploaderType: velerov1.UploaderTypeKopia}}
		if err := controllerutil.SetControllerReference(rs, pvr, env.Client.Scheme()); err != nil {
			t.Fatal(err)
		}
		if err := env.Client.Create(ctx, pvr); err != nil {
			t.Fatal(err)
		}
		pvr.Status.Phase = velerov1.PodVolumePhaseInProgress
		if err := env.Client.Status().Update(ctx, pvr); err != nil {
			t.Fatal(err)
		}
		pvrs = append(pvrs, pvr)
	}
	requests := testenv.StartManager(t, ns, func(mgr ctrl.Manager) error {
		r := &Reconciler{Client: mgr.GetClient(), Cluster: mgr.GetAPIReader(), Recorder: record.NewFakeRecorder(100),
			Clock: clocktesting.NewFakePassiveClock(time.Now())}
		return r.SetupWithManager(mgr)
	})
	before := requests.Snapshot()
	const ticks = 20
	for i := range ticks {
		pvrs[0].Status.Progress.TotalBytes, pvrs[0].Status.Progress.BytesDone = 100*ticks, int64(100*(i+1))
		if err := env.Client.Status().Update(ctx, pvrs[0]); err != nil {
			t.Fatal(err)
		}
	}
	// A phase change after the ticks: once the Restore counts it, every tick has been seen.
	pvrs[1].Status.Phase = velerov1.PodVolumePhaseFailed
	if err := env.Client.Status().Update(ctx, pvrs[1]); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(rs), rs); err != nil {
			t.Fatal(err)
		}
		c := rs.Status.PodVolumeRestores
		return c != nil && c.Failed == 1, fmt.Sprintf("the restore counts %+v, want one failed", c)
	})
	writes, n := requests.Since(before, "POST", "PUT", "PATCH", "DELETE")
	want := fmt.Sprintf("PATCH /apis/velero.io/v1/namespaces/%s/restores/%s/status", ns, rs.Name)
	if n != 1 || writes[want] != 1 {
		t.Fatalf("%d writes during %d progress ticks and one phase change, want one:\n%s", n, ticks, testenv.Describe(writes))
	}
}
