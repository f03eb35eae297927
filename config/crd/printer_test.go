package crd_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"

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

	cfg := rest.CopyConfig(env.Config)
	cfg.GroupVersion = &velerov2alpha1.GroupVersion
	cfg.APIPath = "/apis"
	cfg.NegotiatedSerializer = serializer.NewCodecFactory(env.Client.Scheme()).WithoutConversion()
	rc, err := rest.RESTClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	table := &metav1.Table{}
	err = rc.Get().Namespace(ns).Resource("datauploads").
		SetHeader("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io").Do(ctx).Into(table)
	if err != nil {
		t.Fatalf("get table: %v", err)
	}
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
