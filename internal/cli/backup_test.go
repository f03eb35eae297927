package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/testenv"
)

// ferryIn runs the ferry command with input as its standard input.
func ferryIn(t *testing.T, input string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	cmd := NewCommand(&out)
	cmd.SetIn(strings.NewReader(input))
	cmd.SetArgs(append([]string{"--kubeconfig", testenv.Get(t).Kubeconfig}, args...))
	err := cmd.ExecuteContext(testenv.Context(t))
	return out.String(), err
}

// mustFerry runs ferry and fails the test on an error.
func mustFerry(t *testing.T, args ...string) string {
	t.Helper()
	out, err := ferry(t, args...)
	if err != nil {
		t.Fatalf("ferry %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func createLocation(t *testing.T, ns, name string) {
	t.Helper()
	mustFerry(t, "-n", ns, "backup-location", "create", name, "--provider", "filesystem", "--bucket", "b", "--config", "path=/data")
}

// TestBackupCreateGetDelete creates a backup with every flag, reads it back in each output
// format and asks for its deletion: a DeleteBackupRequest as the server expects it, the Backup
// left alone.
func TestBackupCreateGetDelete(t *testing.T) {
	env, ctx := testenv.Get(t), testenv.Context(t)
	ns := testenv.Namespace(t, "cli-backup")
	createLocation(t, ns, "primary")

	mustFerry(t, "-n", ns, "backup", "create", "b1", "--include-namespaces", "app,db", "--exclude-namespaces", "tmp",
		"--selector", "app=web,tier notin (cache)", "--default-volumes-to-fs-backup", "--snapshot-move-data=false",
		"--storage-location", "primary", "--ttl", "24h")
	b := &velerov1.Backup{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "b1"}, b); err != nil {
		t.Fatal(err)
	}
	s := b.Spec
	if strings.Join(s.IncludedNamespaces, ",") != "app,db" || strings.Join(s.ExcludedNamespaces, ",") != "tmp" ||
		s.StorageLocation != "primary" || s.TTL.Duration != 24*time.Hour ||
		s.DefaultVolumesToFsBackup == nil || !*s.DefaultVolumesToFsBackup || s.SnapshotMoveData == nil || *s.SnapshotMoveData {
		t.Errorf("backup spec = %+v", s)
	}
	if got := metav1.FormatLabelSelector(s.LabelSelector); got != "app=web,tier notin (cache)" {
		t.Errorf("selector = %q", got)
	}

	// A missing location is named before anything is created.
	out, err := ferry(t, "-n", ns, "backup", "create", "b2", "--storage-location", "nowhere")
	if err == nil || !strings.Contains(err.Error(), `backup storage location "nowhere" not found`) {
		t.Errorf("backup with a missing location: err = %v, out = %s", err, out)
	}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "b2"}, &velerov1.Backup{}); err == nil {
		t.Error("backup b2 was created although its location is missing")
	}
	mustFerry(t, "-n", ns, "backup", "create", "b3")

	table := mustFerry(t, "-n", ns, "backup", "get")
	for _, want := range []string{"NAME", "STORAGE LOCATION", "b1", "primary", "app=web,tier notin (cache)", "b3", "<default>"} {
		if !strings.Contains(table, want) {
			t.Errorf("backup get lacks %q:\n%s", want, table)
		}
	}
	var one velerov1.Backup
	if err := json.Unmarshal([]byte(mustFerry(t, "-n", ns, "backup", "get", "b1", "-o", "json")), &one); err != nil {
		t.Fatal(err)
	}
	if one.Kind != "Backup" || one.APIVersion != "velero.io/v1" || one.Name != "b1" || one.Spec.StorageLocation != "primary" || one.ManagedFields != nil {
		t.Errorf("-o json: %+v", one)
	}
	var list velerov1.BackupList
	if err := yaml.Unmarshal([]byte(mustFerry(t, "-n", ns, "backup", "get", "-o", "yaml")), &list); err != nil {
		t.Fatal(err)
	}
	if list.Kind != "BackupList" || len(list.Items) != 2 || list.Items[0].Kind != "Backup" {
		t.Errorf("-o yaml: kind %q, %d items", list.Kind, len(list.Items))
	}
	if got := mustFerry(t, "-n", ns, "backup", "get", "-o", "jsonpath={.items[*].metadata.name}"); got != "b1 b3\n" {
		t.Errorf("-o jsonpath = %q", got)
	}
	if got := mustFerry(t, "-n", ns, "backup", "get", "b1", "-o", "jsonpath={.spec.ttl}"); got != "24h0m0s\n" {
		t.Errorf("-o jsonpath on one backup = %q", got)
	}
	if _, err := ferry(t, "-n", ns, "backup", "get", "-o", "xml"); err == nil || !strings.Contains(err.Error(), "-o \"xml\"") {
		t.Errorf("-o xml: err = %v", err)
	}

	// Deletion: refused without a yes, then a DeleteBackupRequest.
	if out, err := ferryIn(t, "n\n", "-n", ns, "backup", "delete", "b1"); err != nil || !strings.Contains(out, "Nothing deleted") {
		t.Errorf("delete answered no: err = %v, out = %s", err, out)
	}
	dbrs := &velerov1.DeleteBackupRequestList{}
	if err := env.Client.List(ctx, dbrs, client.InNamespace(ns)); err != nil || len(dbrs.Items) != 0 {
		t.Fatalf("after no: %d requests, err %v", len(dbrs.Items), err)
	}
	mustFerry(t, "-n", ns, "backup", "delete", "b1", "--confirm")
	if err := env.Client.List(ctx, dbrs, client.InNamespace(ns)); err != nil || len(dbrs.Items) != 1 {
		t.Fatalf("after --confirm: %d requests, err %v", len(dbrs.Items), err)
	}
	d := dbrs.Items[0]
	if d.Spec.BackupName != "b1" || !strings.HasPrefix(d.Name, "b1-") || d.Labels[velerov1.LabelBackupName] != "b1" ||
		d.Labels[velerov1.LabelBackupUID] != string(b.UID) {
		t.Errorf("DeleteBackupRequest = %s %v %+v", d.Name, d.Labels, d.Spec)
	}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "b1"}, &velerov1.Backup{}); err != nil {
		t.Errorf("the Backup itself: %v (only the server deletes it)", err)
	}
	if _, err := ferry(t, "-n", ns, "backup", "delete", "gone", "--confirm"); err == nil || !strings.Contains(err.Error(), `backup "gone" not found`) {
		t.Errorf("delete of a missing backup: %v", err)
	}
}

// TestCompletion completes backup names through cobra's completion command.
func TestCompletion(t *testing.T) {
	ns := testenv.Namespace(t, "cli-complete")
	mustFerry(t, "-n", ns, "backup", "create", "nightly-1")
	mustFerry(t, "-n", ns, "backup", "create", "weekly-1")
	out := mustFerry(t, "-n", ns, "__complete", "backup", "describe", "ni")
	if !strings.Contains(out, "nightly-1") || strings.Contains(out, "weekly-1") {
		t.Errorf("completions of ni:\n%s", out)
	}
	out = mustFerry(t, "-n", ns, "__complete", "backup", "get", "nightly-1", "")
	if strings.Contains(out, "nightly-1") || !strings.Contains(out, "weekly-1") {
		t.Errorf("completions after nightly-1:\n%s", out)
	}
}
