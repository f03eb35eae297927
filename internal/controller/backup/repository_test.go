package backup

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/operation"
	"github.com/ferry-backup/ferry/internal/testenv"
)

// A backup whose repository is not Ready says so, and fails naming the repository's trouble
// once it waited RepositoryWaitLimit: it never waits silently without end.
func TestABackupWaitsForItsRepositoryBoundedAndSaysWhy(t *testing.T) {
	env := testenv.Get(t)
	ctx := testenv.Context(t)
	ns := testenv.Namespace(t, "repowait")
	bsl := &velerov1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default"},
		Spec: velerov1.BackupStorageLocationSpec{Provider: velerov1.ProviderFilesystem, Config: map[string]string{"path": "/nonexistent"},
			StorageType: velerov1.StorageType{ObjectStorage: &velerov1.ObjectStorageLocation{Bucket: "b"}}}}
	br := &velerov1.BackupRepository{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: RepositoryName("default")},
		Spec: velerov1.BackupRepositorySpec{BackupStorageLocation: "default", RepositoryType: velerov1.RepositoryTypeKopia}}
	b := &velerov1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "nightly"}, Spec: velerov1.BackupSpec{StorageLocation: "default"}}
	for _, obj := range []client.Object{bsl, br, b} {
		if err := env.Client.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	if err := operation.PatchStatus(ctx, env.Client, br, map[string]any{"phase": velerov1.BackupRepositoryPhaseNotReady, "message": "wrong repository password"}); err != nil {
		t.Fatal(err)
	}
	clk := clocktesting.NewFakePassiveClock(b.CreationTimestamp.Add(20 * time.Second))
	recorder := record.NewFakeRecorder(10)
	r := &Reconciler{Client: env.Client, Cluster: env.Client, Recorder: recorder, Clock: clk}
	res, err := r.start(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if res.RequeueAfter != 5*time.Second {
		t.Errorf("after 20 s: requeue after %s, want 5s", res.RequeueAfter)
	}
	if ev := <-recorder.Events; !strings.Contains(ev, "WaitingForRepository") || !strings.Contains(ev, "wrong repository password") {
		t.Errorf("event %q, want one naming the repository's trouble", ev)
	}
	clk.SetTime(b.CreationTimestamp.Add(RepositoryWaitLimit + time.Second))
	if _, err := r.start(ctx, b); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(b), b); err != nil {
		t.Fatal(err)
	}
	want := "BackupRepository default-kopia is NotReady: wrong repository password (waited 5m0s)"
	if b.Status.Phase != velerov1.BackupPhaseFailed || b.Status.FailureReason != want {
		t.Fatalf("after the limit: %s %q, want Failed %q", b.Status.Phase, b.Status.FailureReason, want)
	}
}
