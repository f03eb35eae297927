package backuprepository

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferry-backup/ferry/api/shared"
	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/nodeconfig"
	"github.com/ferry-backup/ferry/internal/repoaccess"
	"github.com/ferry-backup/ferry/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Run(m) }

// The schedule decides when maintenance runs, failed or not: a failed run is retried after a
// backoff, not at once, and a successful one after maintenanceFrequency. A reconcile that is not
// due runs nothing and asks to come back when it is.
func TestMaintenanceRunsWhenTheScheduleSays(t *testing.T) {
	env := testenv.Get(t)
	ctx := testenv.Context(t)
	ns := testenv.Namespace(t, "maintenance")
	for _, obj := range []client.Object{
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: repoaccess.PasswordSecret},
			StringData: map[string]string{repoaccess.PasswordKey: "maintenance-test-password"}},
		&velerov1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default"},
			Spec: velerov1.BackupStorageLocationSpec{Provider: velerov1.ProviderFilesystem, Config: map[string]string{"path": t.TempDir()},
				StorageType: velerov1.StorageType{ObjectStorage: &velerov1.ObjectStorageLocation{Bucket: "b"}}}},
	} {
		if err := env.Client.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	br := &velerov1.BackupRepository{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default-kopia"},
		Spec: velerov1.BackupRepositorySpec{BackupStorageLocation: "default", RepositoryType: velerov1.RepositoryTypeKopia,
			VolumeNamespace: ns, MaintenanceFrequency: shared.Duration{Duration: time.Hour}}}
	if err := env.Client.Create(ctx, br); err != nil {
		t.Fatal(err)
	}
	// Full maintenance is not due (it ran just before): every run here is a quick one. The
	// repository's clock is an hour off until healthy: Kopia refuses to run maintenance then.
	start := time.Now().UTC().Truncate(time.Second)
	br.Annotations = map[string]string{AnnotationLastFull: start.Add(-time.Minute).Format(time.RFC3339)}
	if err := env.Client.Update(ctx, br); err != nil {
		t.Fatal(err)
	}
	var healthy atomic.Bool
	repositoryClock := func() time.Time {
		if healthy.Load() {
			return time.Now()
		}
		return time.Now().Add(time.Hour)
	}
	clock := clocktesting.NewFakePassiveClock(start)
	r := &Reconciler{Client: env.Client, Clock: clock, Config: nodeconfig.Default,
		Repositories: repoaccess.New(repoaccess.Options{Client: env.Client, Namespace: ns, WorkDir: t.TempDir(), Create: true, Now: repositoryClock})}
	t.Cleanup(func() { r.Repositories.Close(context.Background()) })
	req := ctrl.Request{NamespacedName: client.ObjectKeyFromObject(br)}
	step := func(at time.Duration, wantRuns []string, wantRequeue time.Duration) {
		t.Helper()
		clock.SetTime(start.Add(at))
		res, err := r.Reconcile(ctx, req)
		if err != nil {
			t.Fatalf("at %v: %v", at, err)
		}
		if err := env.Client.Get(ctx, req.NamespacedName, br); err != nil {
			t.Fatal(err)
		}
		var runs []string
		for _, m := range br.Status.RecentMaintenance {
			runs = append(runs, fmt.Sprintf("%s@%v", m.Result, m.CompleteTimestamp.Sub(start)))
			if m.Result == velerov1.BackupRepositoryMaintenanceFailed && !strings.Contains(m.Message, "clock skew") {
				t.Fatalf("at %v: maintenance failed for another reason than the clock: %s", at, m.Message)
			}
		}
		if fmt.Sprint(runs) != fmt.Sprint(wantRuns) || res.RequeueAfter != wantRequeue {
			t.Fatalf("at %v: runs %v, requeue after %v; want %v, requeue after %v (%s)", at, runs, res.RequeueAfter,
				wantRuns, wantRequeue, br.Status.Message)
		}
	}
	step(0, []string{"Failed@0s"}, retryFailedMaintenance)
	step(time.Second, []string{"Failed@0s"}, retryFailedMaintenance-time.Second)
	step(5*time.Minute, []string{"Failed@0s", "Failed@5m0s"}, 10*time.Minute)
	step(14*time.Minute, []string{"Failed@0s", "Failed@5m0s"}, time.Minute)
	healthy.Store(true)
	ran := 15 * time.Minute
	step(ran, []string{"Failed@0s", "Failed@5m0s", "Succeeded@15m0s"}, time.Hour)
	step(ran+time.Minute, []string{"Failed@0s", "Failed@5m0s", "Succeeded@15m0s"}, time.Hour-time.Minute)
	if br.Status.LastMaintenanceTime == nil || !br.Status.LastMaintenanceTime.Time.Equal(start.Add(ran)) {
		t.Fatalf("lastMaintenanceTime = %v, want %v", br.Status.LastMaintenanceTime, start.Add(ran))
	}
}

// Failures in a row wait longer each time, up to the maintenance frequency; a success resets it.
func TestNextMaintenance(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *metav1.Time { m := metav1.NewTime(t0.Add(d)); return &m }
	run := func(result velerov1.BackupRepositoryMaintenanceResult, d time.Duration) velerov1.BackupRepositoryMaintenanceStatus {
		return velerov1.BackupRepositoryMaintenanceStatus{Result: result, CompleteTimestamp: at(d)}
	}
	ok, failed := velerov1.BackupRepositoryMaintenanceSucceeded, velerov1.BackupRepositoryMaintenanceFailed
	for _, tc := range []struct {
		name    string
		last    *metav1.Time
		history []velerov1.BackupRepositoryMaintenanceStatus
		want    time.Time
	}{
		{"never ran", nil, nil, time.Time{}},
		{"succeeded", at(0), []velerov1.BackupRepositoryMaintenanceStatus{run(ok, 0)}, t0.Add(time.Hour)},
		{"one failure", nil, []velerov1.BackupRepositoryMaintenanceStatus{run(failed, 0)}, t0.Add(5 * time.Minute)},
		{"three failures", nil, []velerov1.BackupRepositoryMaintenanceStatus{run(failed, 0), run(failed, time.Minute), run(failed, 2*time.Minute)},
			t0.Add(22 * time.Minute)},
		{"many failures wait at most the frequency", at(0), []velerov1.BackupRepositoryMaintenanceStatus{run(failed, 1), run(failed, 2),
			run(failed, 3), run(failed, 4), run(failed, 5)}, t0.Add(time.Hour + 5)},
		{"a failure after a success", at(0), []velerov1.BackupRepositoryMaintenanceStatus{run(ok, 0), run(failed, time.Hour)},
			t0.Add(time.Hour + 5*time.Minute)},
		{"a success after failures", at(time.Hour), []velerov1.BackupRepositoryMaintenanceStatus{run(failed, 0), run(ok, time.Hour)},
			t0.Add(2 * time.Hour)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			br := &velerov1.BackupRepository{Status: velerov1.BackupRepositoryStatus{LastMaintenanceTime: tc.last, RecentMaintenance: tc.history}}
			if got := nextMaintenance(br, time.Hour); !got.Equal(tc.want) {
				t.Fatalf("next maintenance at %v, want %v", got, tc.want)
			}
		})
	}
}

// A maintenanceFrequency Go cannot read keeps the default schedule, and the status says so.
func TestAnInvalidFrequencyKeepsTheDefault(t *testing.T) {
	br := &velerov1.BackupRepository{Spec: velerov1.BackupRepositorySpec{MaintenanceFrequency: shared.Duration{Invalid: "9999999999h"}}}
	note := frequencyNote(br)
	if !strings.Contains(note, `spec.maintenanceFrequency: "9999999999h" is not a duration`) || !strings.Contains(note, "every 1h0m0s, the default") {
		t.Errorf("note = %q", note)
	}
	if note := frequencyNote(&velerov1.BackupRepository{}); note != "" {
		t.Errorf("note for an empty frequency = %q", note)
	}
}
