package datamovement

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/ferry-backup/ferry/api/shared"
	velerov2alpha1 "github.com/ferry-backup/ferry/api/v2alpha1"
	"github.com/ferry-backup/ferry/internal/exposer"
	"github.com/ferry-backup/ferry/internal/nodeconfig"
	"github.com/ferry-backup/ferry/internal/operation"
	"github.com/ferry-backup/ferry/internal/slot"
	"github.com/ferry-backup/ferry/internal/testenv"
)

// The mover completed, but the API server refuses the agent's first writes of the outcome (as
// during an API server restart): the outcome is written again until it lands, the node's slot is
// held until then, and the recorded status is the mover's result, not a failure of the write.
func TestAnOutcomeWhoseWriteFailsIsWrittenAgain(t *testing.T) {
	env := testenv.Get(t)
	ctx := testenv.Context(t)
	ns := testenv.Namespace(t, "outcome")
	du := &velerov2alpha1.DataUpload{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "du"},
		Spec: velerov2alpha1.DataUploadSpec{SnapshotType: velerov2alpha1.SnapshotTypeCSI, SourcePVC: "data", SourceNamespace: "app",
			CSISnapshot: &velerov2alpha1.CSISnapshotSpec{VolumeSnapshot: "snap", StorageClass: "csi"}, DataMover: velerov2alpha1.DataMoverFerry,
			BackupStorageLocation: "default", OperationTimeout: shared.Duration{Duration: time.Hour}}}
	if err := env.Client.Create(ctx, du); err != nil {
		t.Fatal(err)
	}
	now := metav1.NewTime(time.Now().Truncate(time.Second))
	if err := operation.PatchStatus(ctx, env.Client, du, map[string]any{"phase": velerov2alpha1.DataMovePhasePrepared,
		"acceptedByNode": "n0", "node": "n0", "acceptedTimestamp": now}); err != nil {
		t.Fatal(err)
	}
	// The mover pod has ended with its result as the termination message, as the kubelet reports it.
	result := exposer.Result{Phase: exposer.ReasonCompleted, SnapshotID: "k0a1b2", Message: "uploaded",
		Progress: shared.DataMoveOperationProgress{TotalBytes: 4096, BytesDone: 4096, IncrementalBytes: 1024}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: du.Name},
		Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyOnFailure, Containers: []corev1.Container{{Name: exposer.MoverContainer, Image: "mover"}}}}
	if err := env.Client.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	pod.Status = corev1.PodStatus{Phase: corev1.PodSucceeded, ContainerStatuses: []corev1.ContainerStatus{{Name: exposer.MoverContainer,
		State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Completed", Message: result.Encode()}}}}}
	if err := env.Client.Status().Update(ctx, pod); err != nil {
		t.Fatal(err)
	}

	// The API server refuses the first two writes of the terminal phase.
	var refused atomic.Int32
	direct, err := client.NewWithWatch(env.Config, client.Options{Scheme: env.Client.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	c := interceptor.NewClient(direct, interceptor.Funcs{
		SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
			if data, err := patch.Data(obj); err == nil && strings.Contains(string(data), `"Completed"`) && refused.Load() < 2 {
				refused.Add(1)
				return apierrors.NewServiceUnavailable("the API server is restarting")
			}
			return c.SubResource(sub).Patch(ctx, obj, patch, opts...)
		},
	})
	read := &velerov2alpha1.DataUpload{}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(du), read); err != nil {
		t.Fatal(err)
	}
	slots := slot.New(1)
	r := &Reconciler{Client: c, Recorder: record.NewFakeRecorder(10), Clock: clocktesting.NewFakePassiveClock(time.Now()),
		Node: "n0", Upload: true, Exposer: &exposer.Exposer{Client: c, Namespace: ns},
		Runner: operation.NewRunner(ctx, slots), Config: nodeconfig.Default}
	r.run(viewOf(read))
	r.Runner.Wait()

	got := &velerov2alpha1.DataUpload{}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(du), got); err != nil {
		t.Fatal(err)
	}
	if refused.Load() != 2 {
		t.Fatalf("%d writes of the outcome refused, want 2", refused.Load())
	}
	if got.Status.Phase != velerov2alpha1.DataMovePhaseCompleted || got.Status.SnapshotID != result.SnapshotID ||
		got.Status.IncrementalBytes != 1024 || got.Status.Progress.TotalBytes != 4096 {
		t.Fatalf("recorded %s %q, snapshot %q, %d incremental of %d bytes; want the mover's result", got.Status.Phase,
			got.Status.Message, got.Status.SnapshotID, got.Status.IncrementalBytes, got.Status.Progress.TotalBytes)
	}
	if in, _, _ := slots.Stats(); in != 0 {
		t.Fatalf("%d slots held after the outcome was recorded", in)
	}
}
