package crd_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	velerov2alpha1 "github.com/ferry-backup/ferry/api/v2alpha1"
	"github.com/ferry-backup/ferry/internal/testenv"
)

// TestDataUploadTableShowsProgress asks the API server for the table kubectl prints for
// `kubectl get dataupload -n velero` and checks its columns and one row.
func TestDataUploadTableShowsProgress(t *testing.T) {
	env := testenv.Get(t)
	ctx := testenv.Context(t)
	ns := newNamespace(t)
	du := kindCases()[6]
	if du.name != "DataUpload" {
		t.Fatalf("kind case order changed: %s", du.name)
	}
	obj := du.valid(ns, "upload-1")
	if err := env.Client.Create(ctx, obj); err != nil {
		t.Fatal(err)
	}
	du.setStatus(obj)
	if err := env.Client.Status().Update(ctx, obj); err != nil {
		t.Fatal(err)
	}

	table := tableOf(t, velerov2alpha1.GroupVersion, ns, "datauploads")
	var names []string
	for _, col := range table.ColumnDefinitions {
		names = append(names, col.Name)
	}
	want := []string{"Name", "Status", "Started", "Bytes Done", "Total Bytes", "Storage Location", "Node", "Age"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Fatalf("columns (-want +got):\n%s", diff)
	}
	if len(table.Rows) != 1 {
		t.Fatalf("want 1 row, got %d", len(table.Rows))
	}
	cells := table.Rows[0].Cells
	if cells[1] != "Completed" || cells[3] != int64(40) || cells[4] != int64(100) || cells[6] != "node-b" {
		t.Errorf("row = %v, want phase Completed, 40 of 100 bytes, node node-b", cells)
	}
}

// TestBackupAndLocationColumnsReadWell: a Backup's expiry is a future time, which kubectl's
// age-style date columns print as <invalid>, so it is shown as the time itself; a location
// created without an access mode says ReadWrite.
func TestBackupAndLocationColumnsReadWell(t *testing.T) {
	env := testenv.Get(t)
	ctx := testenv.Context(t)
	ns := newNamespace(t)
	expires := metav1.NewTime(time.Now().Add(720 * time.Hour).Truncate(time.Second))
	b := &velerov1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "nightly"}}
	if err := env.Client.Create(ctx, b); err != nil {
		t.Fatal(err)
	}
	b.Status = velerov1.BackupStatus{Phase: velerov1.BackupPhaseCompleted, Expiration: &expires}
	if err := env.Client.Status().Update(ctx, b); err != nil {
		t.Fatal(err)
	}
	table := tableOf(t, velerov1.GroupVersion, ns, "backups")
	for i, col := range table.ColumnDefinitions {
		if col.Name == "Expires" {
			if col.Type != "string" || table.Rows[0].Cells[i] != expires.UTC().Format(time.RFC3339) {
				t.Errorf("Expires column: type %s, cell %v; want the time %s as a string", col.Type, table.Rows[0].Cells[i], expires.UTC().Format(time.RFC3339))
			}
		}
	}

	bsl := &velerov1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default"},
		Spec: velerov1.BackupStorageLocationSpec{Provider: "aws", StorageType: velerov1.StorageType{ObjectStorage: &velerov1.ObjectStorageLocation{Bucket: "b"}}}}
	if err := env.Client.Create(ctx, bsl); err != nil {
		t.Fatal(err)
	}
	if bsl.Spec.AccessMode != velerov1.BackupStorageLocationAccessModeReadWrite {
		t.Errorf("spec.accessMode of a new location = %q, want ReadWrite", bsl.Spec.AccessMode)
	}
}

// tableOf asks the API server for the table kubectl prints for the resource in ns.
func tableOf(t *testing.T, gv schema.GroupVersion, ns, resource string) *metav1.Table {
	t.Helper()
	env := testenv.Get(t)
	cfg := rest.CopyConfig(env.Config)
	cfg.GroupVersion = &gv
	cfg.APIPath = "/apis"
	cfg.NegotiatedSerializer = serializer.NewCodecFactory(env.Client.Scheme()).WithoutConversion()
	rc, err := rest.RESTClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	table := &metav1.Table{}
	err = rc.Get().Namespace(ns).Resource(resource).
		SetHeader("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io").Do(testenv.Context(t)).Into(table)
	if err != nil {
		t.Fatalf("get table of %s: %v", resource, err)
	}
	if len(table.Rows) == 0 {
		t.Fatalf("table of %s has no rows", resource)
	}
	return table
}
