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

// TestScheduleCommands creates a schedule with the backup flags, lists and describes it with the
// backups it took, pauses and unpauses it, and deletes it; the backups stay.
func TestScheduleCommands(t *testing.T) {
	env, ctx := testenv.Get(t), testenv.Context(t)
	ns := testenv.Namespace(t, "cli-schedule")
	createLocation(t, ns, "primary")

	out, err := ferry(t, "-n", ns, "schedule", "create", "nightly")
	if err == nil || !strings.Contains(err.Error(), "--schedule is required") {
		t.Errorf("create without --schedule: %v\n%s", err, out)
	}
	out, err = ferry(t, "-n", ns, "schedule", "create", "nightly", "--schedule", "0 1 * * *", "--storage-location", "nowhere")
	if err == nil || !strings.Contains(err.Error(), `backup storage location "nowhere" not found`) {
		t.Errorf("create with a missing location: %v\n%s", err, out)
	}
	out = mustFerry(t, "-n", ns, "schedule", "create", "nightly", "--schedule", "0 1 * * *", "--include-namespaces", "app",
		"--default-volumes-to-fs-backup", "--storage-location", "primary", "--ttl", "720h", "--use-owner-references-in-backup", "--skip-immediately")
	if !strings.Contains(out, "its backups are named nightly-<yyyymmddhhmmss>") {
		t.Errorf("create says:\n%s", out)
	}
	s := &velerov1.Schedule{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "nightly"}, s); err != nil {
		t.Fatal(err)
	}
	tpl := s.Spec.Template
	if s.Spec.Schedule != "0 1 * * *" || s.Spec.Paused || s.Spec.UseOwnerReferencesInBackup == nil || !*s.Spec.UseOwnerReferencesInBackup ||
		s.Spec.SkipImmediately == nil || !*s.Spec.SkipImmediately || strings.Join(tpl.IncludedNamespaces, ",") != "app" ||
		tpl.StorageLocation != "primary" || tpl.TTL.Duration != 720*time.Hour || tpl.DefaultVolumesToFsBackup == nil || !*tpl.DefaultVolumesToFsBackup {
		t.Errorf("schedule spec = %+v", s.Spec)
	}
	mustFerry(t, "-n", ns, "schedule", "create", "paused", "--schedule", "@every 6h", "--paused")

	// Two backups the server took for it, and one of another schedule.
	for i, name := range []string{"nightly-20261124010000", "nightly-20261125010000", "other-20261125010000"} {
		owner := strings.SplitN(name, "-", 2)[0]
		b := &velerov1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{velerov1.LabelScheduleName: owner}}}
		if err := env.Client.Create(ctx, b); err != nil {
			t.Fatal(err)
		}
		b.Status.Phase = velerov1.BackupPhaseCompleted
		if i == 1 {
			b.Status.Phase = velerov1.BackupPhasePartiallyFailed
		}
		if err := env.Client.Status().Update(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	table := mustFerry(t, "-n", ns, "schedule", "get", "-o", "wide")
	for _, want := range []string{"NAME", "SCHEDULE", "LAST BACKUP", "nightly", "0 1 * * *", "primary", "720h0m0s", "paused", "@every 6h", "true"} {
		if !strings.Contains(table, want) {
			t.Errorf("schedule get lacks %q:\n%s", want, table)
		}
	}
	desc := mustFerry(t, "-n", ns, "schedule", "describe", "nightly")
	for _, want := range []string{"Schedule:         0 1 * * *", "Storage location: primary", "TTL:              720h0m0s",
		"File system:      every pod volume", "nightly-20261125010000", "PartiallyFailed", "nightly-20261124010000"} {
		if !strings.Contains(desc, want) {
			t.Errorf("describe lacks %q:\n%s", want, desc)
		}
	}
	if strings.Contains(desc, "other-20261125010000") || strings.Index(desc, "nightly-20261125010000") > strings.Index(desc, "nightly-20261124010000") {
		t.Errorf("describe lists another schedule's backup, or not the latest first:\n%s", desc)
	}

	mustFerry(t, "-n", ns, "schedule", "pause", "nightly")
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(s), s); err != nil || !s.Spec.Paused {
		t.Errorf("after pause: paused %v, %v", s.Spec.Paused, err)
	}
	if out := mustFerry(t, "-n", ns, "schedule", "pause", "nightly"); !strings.Contains(out, "already paused") {
		t.Errorf("pause twice says:\n%s", out)
	}
	mustFerry(t, "-n", ns, "schedule", "unpause", "nightly", "paused")
	got := &velerov1.ScheduleList{}
	if err := json.Unmarshal([]byte(mustFerry(t, "-n", ns, "schedule", "get", "-o", "json")), got); err != nil {
		t.Fatal(err)
	}
	for _, s := range got.Items {
		if s.Spec.Paused {
			t.Errorf("schedule %s still paused after unpause", s.Name)
		}
	}

	if out, _ := ferryIn(t, "n\n", "-n", ns, "schedule", "delete", "nightly"); !strings.Contains(out, "Nothing deleted") {
		t.Errorf("delete answered no says:\n%s", out)
	}
	mustFerry(t, "-n", ns, "schedule", "delete", "nightly", "--confirm")
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(s), s); err == nil {
		t.Error("schedule nightly is still there after delete")
	}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "nightly-20261124010000"}, &velerov1.Backup{}); err != nil {
		t.Errorf("a backup of the deleted schedule: %v", err)
	}
}
