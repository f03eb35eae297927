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

// TestBackupVerify asks for a verification as ferry-server expects it (the annotation
// "<percent>@<time>"), waits for the answer to that request (not an older one), prints it per
// volume with the damaged files, and fails when damage was found.
func TestBackupVerify(t *testing.T) {
	env, ctx := testenv.Get(t), testenv.Context(t)
	ns := testenv.Namespace(t, "cli-verify")
	b := &velerov1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "nightly"}}
	old, _ := json.Marshal(velerov1.BackupVerification{Request: "10@2020-01-01T00:00:00Z", Backup: "nightly", Completed: true})
	metav1.SetMetaDataAnnotation(&b.ObjectMeta, velerov1.AnnotationLastVerification, string(old))
	if err := env.Client.Create(ctx, b); err != nil {
		t.Fatal(err)
	}
	type result struct {
		out string
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := ferry(t, "-n", ns, "backup", "verify", "nightly", "--percent", "50", "--timeout", "1m")
		done <- result{out, err}
	}()
	var request string
	deadline := time.Now().Add(30 * time.Second)
	for request == "" && time.Now().Before(deadline) {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(b), b); err != nil {
			t.Fatal(err)
		}
		request = b.Annotations[velerov1.AnnotationVerifyRequested]
		time.Sleep(50 * time.Millisecond) // polling the API server, not synchronising
	}
	if !strings.HasPrefix(request, "50@") {
		t.Fatalf("request annotation %q, want 50@<time>", request)
	}
	if _, err := time.Parse(time.RFC3339, strings.TrimPrefix(request, "50@")); err != nil {
		t.Fatalf("request time: %v", err)
	}
	res := velerov1.BackupVerification{Request: request, Backup: "nightly", Percent: 50, Completed: true, Errors: 3, Job: "nightly-verify-abcde",
		Volumes: []velerov1.VolumeVerification{
			{Volume: "app/web-0/data", SnapshotID: "k1", Files: 10, FilesRead: 5, BytesRead: 5000, Errors: 3,
				FirstErrors: []string{"/db/table.ibd: content c1 in pack p77: invalid checksum"}},
			{Volume: "app/web-0/config", SnapshotID: "k2", Files: 2, FilesRead: 1, BytesRead: 10}}}
	data, _ := json.Marshal(res)
	patch := client.MergeFrom(b.DeepCopy())
	metav1.SetMetaDataAnnotation(&b.ObjectMeta, velerov1.AnnotationLastVerification, string(data))
	if err := env.Client.Patch(ctx, b, patch); err != nil {
		t.Fatal(err)
	}
	got := <-done
	if got.err == nil || !strings.Contains(got.err.Error(), "backup nightly failed verification: 3 damaged entries") {
		t.Errorf("error = %v", got.err)
	}
	for _, want := range []string{"VOLUME", "app/web-0/data    k1", "app/web-0/config  k2",
		"volume app/web-0/data: /db/table.ibd: content c1 in pack p77: invalid checksum",
		"volume app/web-0/data: 2 more damaged entries (the log of Job nightly-verify-abcde names them)"} {
		if !strings.Contains(got.out, want) {
			t.Errorf("output lacks %q:\n%s", want, got.out)
		}
	}
}
