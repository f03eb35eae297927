package operation_test

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferry-backup/ferry/api/shared"
	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/metrics"
	"github.com/ferry-backup/ferry/internal/operation"
	"github.com/ferry-backup/ferry/internal/slot"
	"github.com/ferry-backup/ferry/internal/testenv"
)

func advanceFixture(t *testing.T, name string) (client.Client, *operation.Runner, operation.Reporter, *velerov1.PodVolumeBackup) {
	env := testenv.Get(t)
	ctx := testenv.Context(t)
	pvb := &velerov1.PodVolumeBackup{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: velerov1.PodVolumeBackupSpec{Node: "n1", Volume: "data", BackupStorageLocation: "default",
			Pod: corev1.ObjectReference{Kind: "Pod", Namespace: "app", Name: "web"}}}
	if err := env.Client.Create(ctx, pvb); err != nil {
		t.Fatal(err)
	}
	rep := operation.Reporter{Client: env.Client, Recorder: record.NewFakeRecorder(10), Kind: metrics.KindBackup, Now: time.Now}
	return env.Client, operation.NewRunner(ctx, slot.New(1)), rep, pvb
}

func mustNotRun(t *testing.T) func() operation.Spec {
	return func() operation.Spec { t.Error("the operation was started"); return operation.Spec{} }
}

// A cancel request read from a stale cache must not turn an outcome recorded meanwhile into
// Canceled: the write is conditional on the version read.
func TestCancelFromAStaleCacheKeepsTheRecordedOutcome(t *testing.T) {
	c, runner, rep, pvb := advanceFixture(t, "stale-cancel")
	ctx := testenv.Context(t)
	pvb.Spec.Cancel = true
	if err := c.Update(ctx, pvb); err != nil {
		t.Fatal(err)
	}
	stale := pvb.DeepCopy()
	stale.Status.Phase = velerov1.PodVolumePhaseInProgress
	if err := operation.PatchStatus(ctx, c, pvb, map[string]any{"phase": velerov1.PodVolumePhaseCompleted, "snapshotID": "k1"}); err != nil {
		t.Fatal(err)
	}
	err := runner.Advance(ctx, rep, "n1", operation.Request{Object: stale, Node: "n1", Phase: stale.Status.Phase, Cancel: true, Operation: mustNotRun(t)})
	if !apierrors.IsConflict(err) {
		t.Fatalf("Advance from a stale object = %v, want a Conflict", err)
	}
	got := &velerov1.PodVolumeBackup{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(pvb), got); err != nil {
		t.Fatal(err)
	}
	if got.Status.Phase != velerov1.PodVolumePhaseCompleted || got.Status.SnapshotID != "k1" {
		t.Fatalf("phase %s, snapshot %q: the recorded outcome was overwritten", got.Status.Phase, got.Status.SnapshotID)
	}
	// Read fresh, the same request cancels a backup that has not ended.
	if err := operation.PatchStatus(ctx, c, got, map[string]any{"phase": velerov1.PodVolumePhaseAccepted}); err != nil {
		t.Fatal(err)
	}
	if err := runner.Advance(ctx, rep, "n1", operation.Request{Object: got, Node: "n1", Phase: got.Status.Phase, Cancel: true, Operation: mustNotRun(t)}); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(pvb), got); err != nil {
		t.Fatal(err)
	}
	if got.Status.Phase != velerov1.PodVolumePhaseCanceled {
		t.Fatalf("phase %s, want Canceled", got.Status.Phase)
	}
	cond := meta.FindStatusCondition(got.Status.Conditions, operation.ConditionSucceeded)
	if cond == nil || cond.Status != metav1.ConditionFalse || cond.Reason != "Canceled" || cond.ObservedGeneration != got.Generation || got.Generation < 2 {
		t.Fatalf("condition %+v (generation %d), want Succeeded False, reason Canceled, for the generation that asked for the cancel", cond, got.Generation)
	}
}

// An operation its node-agent stopped in MaxAttempts times is failed, not started again.
func TestAnOperationInterruptedTooOftenFails(t *testing.T) {
	c, runner, rep, pvb := advanceFixture(t, "attempts")
	ctx := testenv.Context(t)
	if err := operation.PatchStatus(ctx, c, pvb, map[string]any{"phase": velerov1.PodVolumePhaseInProgress, "attempts": operation.MaxAttempts}); err != nil {
		t.Fatal(err)
	}
	err := runner.Advance(ctx, rep, "n1", operation.Request{Object: pvb, Node: "n1", Phase: pvb.Status.Phase, Attempts: pvb.Status.Attempts, Operation: mustNotRun(t)})
	if err != nil {
		t.Fatal(err)
	}
	got := &velerov1.PodVolumeBackup{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(pvb), got); err != nil {
		t.Fatal(err)
	}
	if got.Status.Phase != velerov1.PodVolumePhaseFailed || !strings.Contains(got.Status.Message, "started 3 times") {
		t.Fatalf("phase %s (%q), want Failed after 3 attempts", got.Status.Phase, got.Status.Message)
	}
	runner.Wait()
}

// An operation whose spec cannot be used (an operationTimeout that is not a duration, under
// Velero's CRDs) ends Failed with the reason, and is never started.
func TestAnInvalidSpecFailsWithoutStarting(t *testing.T) {
	c, runner, rep, pvb := advanceFixture(t, "invalid-spec")
	ctx := testenv.Context(t)
	invalid := (&shared.Duration{Invalid: "9999999999h"}).Err("spec.operationTimeout")
	if err := runner.Advance(ctx, rep, "n1", operation.Request{Object: pvb, Node: "n1", Invalid: invalid, Operation: mustNotRun(t)}); err != nil {
		t.Fatal(err)
	}
	got := &velerov1.PodVolumeBackup{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(pvb), got); err != nil {
		t.Fatal(err)
	}
	if got.Status.Phase != velerov1.PodVolumePhaseFailed || !strings.HasPrefix(got.Status.Message, `spec.operationTimeout: "9999999999h" is not a duration`) {
		t.Fatalf("phase %s (%s), want Failed naming spec.operationTimeout", got.Status.Phase, got.Status.Message)
	}
}
