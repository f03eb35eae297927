package backup

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferry-backup/ferry/api/shared"
	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/testenv"
)

// Under Velero's CRDs a Backup's durations may be text Go cannot read: each is a validation
// error naming its field.
func TestValidateNamesDurationsGoCannotRead(t *testing.T) {
	env := testenv.Get(t)
	ctx := testenv.Context(t)
	ns := testenv.Namespace(t, "durations")
	b := &velerov1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "nightly"}, Spec: velerov1.BackupSpec{
		StorageLocation: "default", TTL: shared.Duration{Invalid: "9999999999h"},
		CSISnapshotTimeout: shared.Duration{Invalid: "10"}, ItemOperationTimeout: shared.Duration{Invalid: "soon"}}}
	r := &Reconciler{Client: env.Client, Cluster: env.Client}
	_, problems, err := r.validate(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(problems, "\n")
	for _, want := range []string{`spec.ttl: "9999999999h" is not a duration`, `spec.csiSnapshotTimeout: "10" is not a duration`,
		`spec.itemOperationTimeout: "soon" is not a duration`} {
		if !strings.Contains(got, want) {
			t.Errorf("validation errors lack %q:\n%s", want, got)
		}
	}
}
