package cli

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/testenv"
)

// TestRepoMaintain asks for maintenance as ferry-server expects it (the annotation
// "<quick|full>@<time>"), waits for the answer to that request (not an older one), and fails
// when the run failed, saying why.
func TestRepoMaintain(t *testing.T) {
	env, ctx := testenv.Get(t), testenv.Context(t)
	ns := testenv.Namespace(t, "cli-maintain")
	br := &velerov1.BackupRepository{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default-kopia"},
		Spec: velerov1.BackupRepositorySpec{BackupStorageLocation: "default", RepositoryType: velerov1.RepositoryTypeKopia}}
	old, _ := json.Marshal(velerov1.MaintenanceAnswer{Request: "full@2020-01-01T00:00:00Z", Mode: "full", Succeeded: true})
	metav1.SetMetaDataAnnotation(&br.ObjectMeta, velerov1.AnnotationMaintenanceAnswer, string(old))
	if err := env.Client.Create(ctx, br); err != nil {
		t.Fatal(err)
	}
	type result struct {
		out string
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := ferry(t, "-n", ns, "repo", "maintain", "default-kopia", "--full", "--wait", "--timeout", "1m")
		done <- result{out, err}
	}()
	var request string
	deadline := time.Now().Add(30 * time.Second)
	for request == "" && time.Now().Before(deadline) {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(br), br); err != nil {
			t.Fatal(err)
		}
		request = br.Annotations[velerov1.AnnotationMaintenanceRequested]
		time.Sleep(50 * time.Millisecond) // polling the API server, not synchronising
	}
	if _, err := time.Parse(time.RFC3339, strings.TrimPrefix(request, "full@")); !strings.HasPrefix(request, "full@") || err != nil {
		t.Fatalf("request annotation %q, want full@<time> (%v)", request, err)
	}
	start := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	data, _ := json.Marshal(velerov1.MaintenanceAnswer{Request: request, Mode: "full", Job: "default-kopia-maintain-abcde",
		Start: start, End: start.Add(90 * time.Second), Message: "full maintenance failed: clock skew"})
	patch := client.MergeFrom(br.DeepCopy())
	metav1.SetMetaDataAnnotation(&br.ObjectMeta, velerov1.AnnotationMaintenanceAnswer, string(data))
	if err := env.Client.Patch(ctx, br, patch); err != nil {
		t.Fatal(err)
	}
	got := <-done
	want := "full maintenance of backup repository default-kopia failed in Job default-kopia-maintain-abcde (1m30s): full maintenance failed: clock skew"
	if got.err == nil || got.err.Error() != want {
		t.Errorf("error = %v, want %q\n%s", got.err, want, got.out)
	}
	if !strings.Contains(got.out, "Running full maintenance of backup repository default-kopia") {
		t.Errorf("output:\n%s", got.out)
	}
}
