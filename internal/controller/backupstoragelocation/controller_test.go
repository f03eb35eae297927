package backupstoragelocation

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferry-backup/ferry/api/shared"
	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/repoaccess"
	"github.com/ferry-backup/ferry/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Run(m) }

// A location is probed when its spec changed or validationFrequency has passed since the last
// check, never in between: a reconcile that is not due writes nothing and asks to come back when
// the check is due.
func TestProbesOnlyWhenDueOrTheSpecChanged(t *testing.T) {
	env := testenv.Get(t)
	ctx := testenv.Context(t)
	ns := testenv.Namespace(t, "bsl")
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	bsl := &velerov1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default"},
		Spec: velerov1.BackupStorageLocationSpec{Provider: velerov1.ProviderFilesystem, Config: map[string]string{"path": good},
			ValidationFrequency: &shared.Duration{Duration: time.Minute},
			StorageType:         velerov1.StorageType{ObjectStorage: &velerov1.ObjectStorageLocation{Bucket: "b"}}}}
	if err := env.Client.Create(ctx, bsl); err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	clock := clocktesting.NewFakePassiveClock(start)
	r := &Reconciler{Client: env.Client, Clock: clock,
		Repositories: repoaccess.New(repoaccess.Options{Client: env.Client, Namespace: ns, WorkDir: t.TempDir()})}
	req := ctrl.Request{NamespacedName: client.ObjectKeyFromObject(bsl)}
	step := func(at time.Duration, wantPhase velerov1.BackupStorageLocationPhase, wantChecked time.Duration, wantRequeue time.Duration) {
		t.Helper()
		clock.SetTime(start.Add(at))
		res, err := r.Reconcile(ctx, req)
		if err != nil {
			t.Fatalf("at %v: %v", at, err)
		}
		if err := env.Client.Get(ctx, req.NamespacedName, bsl); err != nil {
			t.Fatal(err)
		}
		checked := bsl.Status.LastValidationTime
		if bsl.Status.Phase != wantPhase || checked == nil || !checked.Time.Equal(start.Add(wantChecked)) || res.RequeueAfter != wantRequeue {
			t.Fatalf("at %v: phase %s (%s), checked at %v, requeue after %v; want %s, checked at %v, requeue after %v",
				at, bsl.Status.Phase, bsl.Status.Message, checked, res.RequeueAfter, wantPhase, start.Add(wantChecked), wantRequeue)
		}
	}
	step(0, velerov1.BackupStorageLocationPhaseAvailable, 0, time.Minute)
	// The storage breaks; nothing notices until the check is due.
	if err := os.RemoveAll(good); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(good, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	step(10*time.Second, velerov1.BackupStorageLocationPhaseAvailable, 0, 50*time.Second)
	step(59*time.Second, velerov1.BackupStorageLocationPhaseAvailable, 0, time.Second)
	step(61*time.Second, velerov1.BackupStorageLocationPhaseUnavailable, 61*time.Second, time.Minute)
	// A changed spec is checked at once.
	patch := client.MergeFrom(bsl.DeepCopy())
	bsl.Spec.Config["path"] = filepath.Join(dir, "elsewhere")
	if err := env.Client.Patch(ctx, bsl, patch); err != nil {
		t.Fatal(err)
	}
	step(70*time.Second, velerov1.BackupStorageLocationPhaseAvailable, 70*time.Second, time.Minute)
	// Periodic checks switched off: checked once for the new spec, then never.
	patch = client.MergeFrom(bsl.DeepCopy())
	bsl.Spec.ValidationFrequency = &shared.Duration{}
	if err := env.Client.Patch(ctx, bsl, patch); err != nil {
		t.Fatal(err)
	}
	step(80*time.Second, velerov1.BackupStorageLocationPhaseAvailable, 80*time.Second, 0)
	step(time.Hour, velerov1.BackupStorageLocationPhaseAvailable, 80*time.Second, 0)
}

// A location whose durations Go cannot read (Velero's CRDs let them be stored) is Unavailable,
// naming each field.
func TestDurationErrNamesEachField(t *testing.T) {
	bsl := &velerov1.BackupStorageLocation{Spec: velerov1.BackupStorageLocationSpec{
		ValidationFrequency: &shared.Duration{Invalid: "9999999999h"}, BackupSyncPeriod: &shared.Duration{Invalid: "often"}}}
	err := durationErr(bsl)
	if err == nil || !strings.Contains(err.Error(), `spec.validationFrequency: "9999999999h"`) || !strings.Contains(err.Error(), `spec.backupSyncPeriod: "often"`) {
		t.Errorf("durationErr = %v, want both fields named", err)
	}
	if err := durationErr(&velerov1.BackupStorageLocation{}); err != nil {
		t.Errorf("durationErr of an empty spec = %v", err)
	}
}
