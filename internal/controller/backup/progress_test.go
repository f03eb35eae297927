package backup

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

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

	cfg, requests := testenv.CountRequests(env.Config)
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{Scheme: env.Client.Scheme(), Metrics: metricsserver.Options{BindAddress: "0"},
		Cache:      cache.Options{DefaultNamespaces: map[string]cache.Config{ns: {}}},
		Controller: config.Controller{SkipNameValidation: ptr.To(true)}})
	if err != nil {
		t.Fatal(err)
	}
	r := &Reconciler{Client: mgr.GetClient(), Cluster: mgr.GetAPIReader(), Recorder: record.NewFakeRecorder(100),
		Clock: clocktesting.NewFakePassiveClock(time.Now())}
	if err := r.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	mctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(mctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})

	setPhase := func(name string, phase velerov1.PodVolumePhase, completed int) {
		t.Helper()
		pvb := pvbs[name]
		pvb.Status.Phase = phase
		if err := env.Client.Status().Update(ctx, pvb); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			if err := env.Client.Get(ctx, client.ObjectKeyFromObject(b), b); err != nil {
				t.Fatal(err)
			}
			if c := b.Status.PodVolumeBackups; c != nil && c.Completed == completed {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the backup counts %+v after PodVolumeBackup %s %s, want %d completed", b.Status.PodVolumeBackups, name, phase, completed)
			}
			time.Sleep(20 * time.Millisecond) // polling the API server for the outcome, not waiting for it
		}
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
