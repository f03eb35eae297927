package datamovement

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferry-backup/ferry/api/shared"
	velerov2alpha1 "github.com/ferry-backup/ferry/api/v2alpha1"
	"github.com/ferry-backup/ferry/internal/exposer"
	"github.com/ferry-backup/ferry/internal/testenv"
)

// Velero reads a completed DataUpload's incrementalBytes at the top level of its status (its
// schema prunes progress.incrementalBytes): the agent writes it there from the mover's result.
func TestCompletedUploadReportsIncrementalBytesWhereVeleroReadsThem(t *testing.T) {
	env, ctx := testenv.Get(t).Client, testenv.Context(t)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "status-"}}
	if err := env.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	du := &velerov2alpha1.DataUpload{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "du"},
		Spec: velerov2alpha1.DataUploadSpec{SnapshotType: velerov2alpha1.SnapshotTypeCSI, SourcePVC: "data", SourceNamespace: "app",
			CSISnapshot: &velerov2alpha1.CSISnapshotSpec{VolumeSnapshot: "snap", StorageClass: "csi"}, BackupStorageLocation: "default"}}
	if err := env.Create(ctx, du); err != nil {
		t.Fatal(err)
	}
	r := &Reconciler{Client: env, Recorder: record.NewFakeRecorder(10), Clock: clocktesting.NewFakePassiveClock(time.Now()),
		Node: "node-a", Upload: true, Exposer: &exposer.Exposer{Namespace: ns.Name}}
	res := &exposer.Result{Phase: exposer.ReasonCompleted, SnapshotID: "k0123", Message: "done",
		Progress: shared.DataMoveOperationProgress{TotalBytes: 1000, BytesDone: 1000, IncrementalBytes: 300}}
	if err := r.done(ctx, viewOf(du), res, nil); err != nil {
		t.Fatalf("record the result: %v", err)
	}
	got := &velerov2alpha1.DataUpload{}
	if err := env.Get(ctx, client.ObjectKeyFromObject(du), got); err != nil {
		t.Fatal(err)
	}
	if got.Status.Phase != velerov2alpha1.DataMovePhaseCompleted || got.Status.IncrementalBytes != 300 || got.Status.Progress.IncrementalBytes != 300 {
		t.Errorf("status = phase %s, incrementalBytes %d, progress %+v; want Completed, 300 at the top level and in progress",
			got.Status.Phase, got.Status.IncrementalBytes, got.Status.Progress)
	}
}
