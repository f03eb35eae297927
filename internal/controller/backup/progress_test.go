package backup

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

// The Backup sums up its operations when their phase changes: progress ticks of a running
// PodVolumeBackup make the controller write nothing, and a phase change makes it patch the
// Backup's status once.
func TestProgressTicksWriteNothing(t *testing.T) {
	env := testenv.Get(t)
	ctx := testenv.Context(t)
	ns := testenv.Namespace(t, "progress")
	b := &velerov1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "nightly"}}
	if err := env.Client.Create(ctx, b); err != nil {
		t.Fatal(err)
	}
	b.Status = velerov1.BackupStatus{Phase: velerov1.BackupPhaseInProgress, PodVolumeBackups: &velerov1.VolumeOperationCounts{Total: 3},
		Progress: &velerov1.BackupProgress{TotalItems: 3}}
	if err := env.Client.Status().Update(ctx, b); err != nil {
		t.Fatal(err)
	}
	pvbs := map[string]*velerov1.PodVolumeBackup{}
	for _, name := range []string{"a", "b", "c"} {
		pvb := &velerov1.PodVolumeBackup{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "nightly-" + name,
			Labels: map[string]string{velerov1.LabelBackupName: b.Name}},
			Spec: velerov1.PodVolumeBackupSpec{Node: "node-a", Volume: "data", BackupStorageLocation: "default",
				Pod: corev1.ObjectReference{Kind: "Pod", Namespace: "app", Name: name}}}
		if err := controllerutil.SetControllerReference(b, pvb, env.Client.Scheme()); err != nil {
			t.Fatal(err)
		}
		if err := env.Client.Create(ctx, pvb); err != nil {
			t.Fatal(err)
		}
		pvb.Status.Phase = velerov1.PodVolumePhaseInProgress
		if err := env.Client.Status().Update(ctx, pvb); err != nil {
			t.Fatal(err)
		}
		pvbs[name] = pvb
	}

	requests := testenv.StartManager(t, ns, func(mgr ctrl.Manager) error {
		r := &Reconciler{Client: mgr.GetClient(), Cluster: mgr.GetAPIReader(), Recorder: record.NewFakeRecorder(100),
			Clock: clocktesting.NewFakePassiveClock(time.Now())}
		return r.SetupWithManager(mgr)
	})
	setPhase := func(name string, phase velerov1.PodVolumePhase, completed int) {
		t.Helper()
		pvb := pvbs[name]
		pvb.Status.Phase = phase
		if err := env.Client.Status().Update(ctx, pvb); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, 30*time.Second, func() (bool, string) {
			if err := env.Client.Get(ctx, client.ObjectKeyFromObject(b), b); err != nil {
				t.Fatal(err)
			}
			c := b.Status.PodVolumeBackups
			return c != nil && c.Completed == completed, fmt.Sprintf("the backup counts %+v after PodVolumeBackup %s %s, want %d completed",
				c, name, phase, completed)
		})
	}
	setPhase("a", velerov1.PodVolumePhaseCompleted, 1)
	before := requests.Snapshot()
	const ticks = 20
	for i := range ticks {
		pvbs["b"].Status.Progress.TotalBytes, pvbs["b"].Status.Progress.BytesDone = 100*ticks, int64(100*(i+1))
		if err := env.Client.Status().Update(ctx, pvbs["b"]); err != nil {
			t.Fatal(err)
		}
	}
	setPhase("c", velerov1.PodVolumePhaseCompleted, 2)
	writes, n := requests.Since(before, "POST", "PUT", "PATCH", "DELETE")
	all, total := requests.Since(before, "GET", "POST", "PUT", "PATCH", "DELETE")
	t.Logf("during %d progress ticks and one phase change the controller made %d requests:\n%s", ticks, total, testenv.Describe(all))
	want := fmt.Sprintf("PATCH /apis/velero.io/v1/namespaces/%s/backups/%s/status", ns, b.Name)
	if n != 1 || writes[want] != 1 {
		t.Fatalf("%d writes during %d progress ticks and one phase change, want one:\n%s", n, ticks, testenv.Describe(writes))
	}
}
