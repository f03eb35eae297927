package operationdeadline

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferry-backup/ferry/api/shared"
	velerov1 "github.com/ferry-backup/ferry/api/v1"
	velerov2alpha1 "github.com/ferry-backup/ferry/api/v2alpha1"
	"github.com/ferry-backup/ferry/internal/operation"
	"github.com/ferry-backup/ferry/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Run(m) }

// An operation no node-agent accepts (its node has none) is failed by the server once its
// timeout, counted from its creation, and the grace have passed; one accepted by an agent that
// went away likewise from its acceptance; ended ones are left alone.
func TestOperationsNobodyEndsAreFailedByTheServer(t *testing.T) {
	env := testenv.Get(t)
	ctx := testenv.Context(t)
	ns := testenv.Namespace(t, "deadline")
	pod := corev1.ObjectReference{Kind: "Pod", Namespace: "app", Name: "web"}
	unaccepted := &velerov1.PodVolumeBackup{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "unaccepted"},
		Spec: velerov1.PodVolumeBackupSpec{Node: "gone", Pod: pod, Volume: "data", BackupStorageLocation: "default",
			OperationTimeout: &shared.Duration{Duration: 10 * time.Minute}}}
	completed := unaccepted.DeepCopy()
	completed.Name = "completed"
	accepted := &velerov2alpha1.DataUpload{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "accepted"},
		Spec: velerov2alpha1.DataUploadSpec{SnapshotType: "CSI", SourceNamespace: "app", SourcePVC: "data", DataMover: velerov2alpha1.DataMoverFerry,
			BackupStorageLocation: "default", OperationTimeout: shared.Duration{Duration: 30 * time.Minute},
			CSISnapshot: &velerov2alpha1.CSISnapshotSpec{VolumeSnapshot: "snap", StorageClass: "csi"}}}
	for _, obj := range []client.Object{unaccepted, completed, accepted} {
		if err := env.Client.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	created := unaccepted.CreationTimestamp.Time
	acceptedAt := metav1.NewTime(created.Add(5 * time.Minute))
	if err := operation.PatchStatus(ctx, env.Client, completed, map[string]any{"phase": velerov1.PodVolumePhaseCompleted}); err != nil {
		t.Fatal(err)
	}
	if err := operation.PatchStatus(ctx, env.Client, accepted, map[string]any{"phase": velerov2alpha1.DataMovePhaseInProgress,
		"acceptedByNode": "n2", "node": "n2", "acceptedTimestamp": acceptedAt}); err != nil {
		t.Fatal(err)
	}

	clk := clocktesting.NewFakePassiveClock(created)
	reconcile := func(obj client.Object, empty client.Object) ctrl.Result {
		t.Helper()
		r := &Reconciler{Client: env.Client, Recorder: record.NewFakeRecorder(10), Clock: clk, Object: empty}
		res, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(obj)})
		if err != nil {
			t.Fatal(err)
		}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
			t.Fatal(err)
		}
		return res
	}
	// Before the deadline and its grace: looked at again then, nothing written.
	if res := reconcile(unaccepted, &velerov1.PodVolumeBackup{}); res.RequeueAfter != 11*time.Minute || unaccepted.Status.Phase != "" {
		t.Fatalf("before its deadline: requeue after %s, phase %q", res.RequeueAfter, unaccepted.Status.Phase)
	}
	clk.SetTime(created.Add(11*time.Minute + time.Second))
	reconcile(unaccepted, &velerov1.PodVolumeBackup{})
	if unaccepted.Status.Phase != velerov1.PodVolumePhaseFailed || !strings.Contains(unaccepted.Status.Message, "no node-agent accepted it") ||
		!strings.Contains(unaccepted.Status.Message, "node gone") {
		t.Fatalf("past its deadline: phase %s, message %q", unaccepted.Status.Phase, unaccepted.Status.Message)
	}
	if res := reconcile(completed, &velerov1.PodVolumeBackup{}); completed.Status.Phase != velerov1.PodVolumePhaseCompleted || res.RequeueAfter != 0 {
		t.Fatalf("an ended operation was touched: %s, requeue %s", completed.Status.Phase, res.RequeueAfter)
	}
	// The upload counts from its acceptance: 5 + 30 + 1 minutes after creation.
	if res := reconcile(accepted, &velerov2alpha1.DataUpload{}); res.RequeueAfter != 36*time.Minute-(11*time.Minute+time.Second) {
		t.Fatalf("accepted upload: requeue after %s", res.RequeueAfter)
	}
	clk.SetTime(created.Add(36 * time.Minute))
	reconcile(accepted, &velerov2alpha1.DataUpload{})
	if accepted.Status.Phase != velerov2alpha1.DataMovePhaseFailed || !strings.Contains(accepted.Status.Message, "node n2") {
		t.Fatalf("accepted upload past its deadline: %s, %q", accepted.Status.Phase, accepted.Status.Message)
	}
}

// The backstop neither fails an operation at once nor never for an operationTimeout that is not
// a duration: its deadline counts from the default timeout, and the reason is kept for the
// message.
func TestAnInvalidTimeoutCountsFromTheDefault(t *testing.T) {
	pvb := &velerov1.PodVolumeBackup{Spec: velerov1.PodVolumeBackupSpec{OperationTimeout: &shared.Duration{Invalid: "9999999999h"}}}
	du := &velerov2alpha1.DataUpload{Spec: velerov2alpha1.DataUploadSpec{OperationTimeout: shared.Duration{Invalid: "soon"}}}
	for _, obj := range []client.Object{pvb, du} {
		f := factsOf(obj)
		if f.timeout != operation.DefaultTimeout || f.invalid == nil || !strings.HasPrefix(f.invalid.Error(), "spec.operationTimeout: ") {
			t.Errorf("%T: timeout %s, invalid %v; want the default and an error naming spec.operationTimeout", obj, f.timeout, f.invalid)
		}
	}
}
