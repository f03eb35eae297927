package schedule

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferry-backup/ferry/api/shared"
	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Run(m) }

// fixture is one schedule in its own namespace, a fake clock and the reconciler under test.
type fixture struct {
	t        *testing.T
	ns       string
	schedule *velerov1.Schedule
	clock    *clocktesting.FakePassiveClock
	recorder *record.FakeRecorder
	// created is the schedule's creation time, from which an hourly schedule's first time is
	// the next full hour.
	created time.Time
}

func newFixture(t *testing.T, spec velerov1.ScheduleSpec) *fixture {
	t.Helper()
	env, ctx := testenv.Get(t), testenv.Context(t)
	ns := testenv.Namespace(t, "schedule")
	s := &velerov1.Schedule{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "hourly"}, Spec: spec}
	if err := env.Client.Create(ctx, s); err != nil {
		t.Fatal(err)
	}
	created := s.CreationTimestamp.Time.UTC()
	return &fixture{t: t, ns: ns, schedule: s, clock: clocktesting.NewFakePassiveClock(created),
		recorder: record.NewFakeRecorder(100), created: created}
}

// hour returns the n-th full hour after the schedule's creation (1: its first time).
func (f *fixture) hour(n int) time.Time {
	return f.created.Truncate(time.Hour).Add(time.Duration(n) * time.Hour)
}

// reconcile runs one pass at the given time and reads the schedule back.
func (f *fixture) reconcile(now time.Time) ctrl.Result {
	f.t.Helper()
	f.clock.SetTime(now)
	r := &Reconciler{Client: testenv.Get(f.t).Client, Recorder: f.recorder, Clock: f.clock}
	res, err := r.Reconcile(testenv.Context(f.t), ctrl.Request{NamespacedName: client.ObjectKeyFromObject(f.schedule)})
	if err != nil {
		f.t.Fatalf("reconcile at %s: %v", now, err)
	}
	if err := testenv.Get(f.t).Client.Get(testenv.Context(f.t), client.ObjectKeyFromObject(f.schedule), f.schedule); err != nil {
		f.t.Fatal(err)
	}
	return res
}

func (f *fixture) backups() []velerov1.Backup {
	f.t.Helper()
	list := &velerov1.BackupList{}
	if err := testenv.Get(f.t).Client.List(testenv.Context(f.t), list, client.InNamespace(f.ns)); err != nil {
		f.t.Fatal(err)
	}
	slices.SortFunc(list.Items, func(a, b velerov1.Backup) int { return strings.Compare(a.Name, b.Name) })
	return list.Items
}

func (f *fixture) names() []string {
	var names []string
	for _, b := range f.backups() {
		names = append(names, b.Name)
	}
	return names
}

// events drains the Events recorded so far.
func (f *fixture) events() string {
	var out []string
	for {
		select {
		case e := <-f.recorder.Events:
			out = append(out, e)
		default:
			return strings.Join(out, "\n")
		}
	}
}

func (f *fixture) setBackupPhase(name string, phase velerov1.BackupPhase) {
	f.t.Helper()
	c, ctx := testenv.Get(f.t).Client, testenv.Context(f.t)
	b := &velerov1.Backup{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: f.ns, Name: name}, b); err != nil {
		f.t.Fatal(err)
	}
	b.Status.Phase = phase
	if err := c.Status().Update(ctx, b); err != nil {
		f.t.Fatal(err)
	}
}

func hourly() velerov1.ScheduleSpec {
	return velerov1.ScheduleSpec{Schedule: "0 * * * *", Template: velerov1.BackupSpec{
		Metadata:           velerov1.Metadata{Labels: map[string]string{"team": "payments"}},
		IncludedNamespaces: []string{"app"}, TTL: shared.Duration{Duration: 72 * time.Hour}, DefaultVolumesToFsBackup: ptr.To(true),
	}}
}

// A schedule waits for its first cron time after its creation, then creates one Backup named
// after that time, with the template's spec (ttl included), its labels, the schedule's label
// and the schedule as owner; it asks to be woken at the next time and makes nothing twice.
func TestDueScheduleCreatesOneBackup(t *testing.T) {
	spec := hourly()
	spec.UseOwnerReferencesInBackup = ptr.To(true)
	f := newFixture(t, spec)

	res := f.reconcile(f.created)
	if f.schedule.Status.Phase != velerov1.SchedulePhaseEnabled || len(f.backups()) != 0 || res.RequeueAfter != f.hour(1).Sub(f.created) {
		t.Fatalf("before its first time: phase %s, backups %v, requeue after %s", f.schedule.Status.Phase, f.names(), res.RequeueAfter)
	}

	now := f.hour(1).Add(5 * time.Second)
	res = f.reconcile(now)
	backups := f.backups()
	if len(backups) != 1 {
		t.Fatalf("at its first time: backups %v, want one", f.names())
	}
	b := backups[0]
	if want := "hourly-" + f.hour(1).Format("20060102150405"); b.Name != want {
		t.Errorf("name %s, want %s", b.Name, want)
	}
	if diff := cmp.Diff(map[string]string{"team": "payments", velerov1.LabelScheduleName: "hourly"}, b.Labels); diff != "" {
		t.Errorf("labels (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(spec.Template, b.Spec); diff != "" {
		t.Errorf("spec is not the template (-want +got):\n%s", diff)
	}
	owner := metav1.GetControllerOf(&b)
	if owner == nil || owner.Kind != "Schedule" || owner.Name != "hourly" || owner.UID != f.schedule.UID {
		t.Errorf("controller reference %+v, want the schedule", owner)
	}
	if lb := f.schedule.Status.LastBackup; lb == nil || !lb.Time.Equal(now) {
		t.Errorf("status.lastBackup %v, want %s", lb, now)
	}
	if res.RequeueAfter != time.Hour-5*time.Second {
		t.Errorf("requeue after %s, want the next hour", res.RequeueAfter)
	}
	if ev := f.events(); !strings.Contains(ev, "BackupCreated") || !strings.Contains(ev, b.Name) {
		t.Errorf("events %q, want BackupCreated naming %s", ev, b.Name)
	}

	f.reconcile(now.Add(time.Minute))
	if n := len(f.backups()); n != 1 {
		t.Fatalf("a second pass before the next time made %d backups", n)
	}
}

// A paused schedule creates nothing and is not woken by the clock; unpaused long after, it
// takes the missed runs once, at once.
func TestPausedScheduleRunsNothing(t *testing.T) {
	spec := hourly()
	spec.Paused = true
	f := newFixture(t, spec)
	if res := f.reconcile(f.hour(5)); len(f.backups()) != 0 || res.RequeueAfter != 0 || f.schedule.Status.Phase != velerov1.SchedulePhaseEnabled {
		t.Fatalf("paused: backups %v, requeue after %s, phase %s", f.names(), res.RequeueAfter, f.schedule.Status.Phase)
	}
	if owner := f.schedule.OwnerReferences; owner != nil {
		t.Fatal(owner)
	}
	f.unpause()
	f.reconcile(f.hour(5).Add(time.Minute))
	if names := f.names(); len(names) != 1 || names[0] != BackupName("hourly", f.hour(5)) {
		t.Fatalf("unpaused: backups %v, want one for the latest time", names)
	}
}

func (f *fixture) unpause() {
	f.t.Helper()
	patch := client.MergeFrom(f.schedule.DeepCopy())
	f.schedule.Spec.Paused = false
	if err := testenv.Get(f.t).Client.Patch(testenv.Context(f.t), f.schedule, patch); err != nil {
		f.t.Fatal(err)
	}
}

// Schedules that cannot run end FailedValidation with errors naming the field, and run nothing.
func TestInvalidSchedulesFailValidation(t *testing.T) {
	cases := []struct {
		name   string
		change func(*velerov1.ScheduleSpec)
		want   string
	}{
		{"not a cron expression", func(s *velerov1.ScheduleSpec) { s.Schedule = "every day at noon" }, `spec.schedule: "every day at noon" is not a cron expression`},
		{"six fields", func(s *velerov1.ScheduleSpec) { s.Schedule = "0 0 * * * *" }, "spec.schedule"},
		{"a zone and nothing else", func(s *velerov1.ScheduleSpec) { s.Schedule = "CRON_TZ=UTC" }, "spec.schedule"},
		{"never due", func(s *velerov1.ScheduleSpec) { s.Schedule = "0 0 30 2 *" }, `spec.schedule: "0 0 30 2 *" never comes due`},
		{"bad template label", func(s *velerov1.ScheduleSpec) { s.Template.Labels = map[string]string{"team": "a b"} }, "spec.template.metadata.labels"},
		{"bad selector", func(s *velerov1.ScheduleSpec) {
			s.Template.LabelSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: "Near"}}}
		}, "spec.template.labelSelector.matchExpressions[0].operator"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			spec := hourly()
			c.change(&spec)
			f := newFixture(t, spec)
			res := f.reconcile(f.hour(3))
			st := f.schedule.Status
			if st.Phase != velerov1.SchedulePhaseFailedValidation || len(st.ValidationErrors) != 1 || !strings.Contains(st.ValidationErrors[0], c.want) {
				t.Fatalf("phase %s, errors %q; want FailedValidation naming %q", st.Phase, st.ValidationErrors, c.want)
			}
			if len(f.backups()) != 0 || res.RequeueAfter != 0 {
				t.Fatalf("an invalid schedule ran: backups %v, requeue after %s", f.names(), res.RequeueAfter)
			}
			if ev := f.events(); !strings.Contains(ev, "FailedValidation") {
				t.Errorf("events %q, want FailedValidation", ev)
			}
		})
	}
}

// A name whose Backups' names would not fit in a label fails validation too.
func TestLongScheduleNameFailsValidation(t *testing.T) {
	env, ctx := testenv.Get(t), testenv.Context(t)
	s := &velerov1.Schedule{ObjectMeta: metav1.ObjectMeta{Namespace: testenv.Namespace(t, "schedule"), Name: strings.Repeat("n", maxNameLength+1)}, Spec: hourly()}
	if err := env.Client.Create(ctx, s); err != nil {
		t.Fatal(err)
	}
	r := &Reconciler{Client: env.Client, Recorder: record.NewFakeRecorder(10), Clock: clocktesting.NewFakePassiveClock(time.Now())}
	if _, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(s)}); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(s), s); err != nil {
		t.Fatal(err)
	}
	if s.Status.Phase != velerov1.SchedulePhaseFailedValidation || !strings.HasPrefix(strings.Join(s.Status.ValidationErrors, ""), "metadata.name: at most 48") {
		t.Fatalf("phase %s, errors %q", s.Status.Phase, s.Status.ValidationErrors)
	}
}

// While a Backup of the schedule has not ended, a due run is skipped (not delayed): lastSkipped,
// a Warning Event, and the next run at the next cron time, when the earlier Backup has ended.
func TestOverlappingRunIsSkipped(t *testing.T) {
	f := newFixture(t, hourly())
	f.reconcile(f.hour(1))
	first := BackupName("hourly", f.hour(1))
	f.setBackupPhase(first, velerov1.BackupPhaseInProgress)
	f.events()

	res := f.reconcile(f.hour(2).Add(time.Second))
	if names := f.names(); len(names) != 1 {
		t.Fatalf("a run overlapped: backups %v", names)
	}
	if ls := f.schedule.Status.LastSkipped; ls == nil || !ls.Time.Equal(f.hour(2).Add(time.Second)) {
		t.Errorf("status.lastSkipped %v", ls)
	}
	if lb := f.schedule.Status.LastBackup; lb == nil || !lb.Time.Equal(f.hour(1)) {
		t.Errorf("status.lastBackup %v moved", lb)
	}
	if ev := f.events(); !strings.Contains(ev, "Warning Skipped") || !strings.Contains(ev, first+" of this schedule has not ended") {
		t.Errorf("events %q, want Skipped naming %s", ev, first)
	}
	if res.RequeueAfter != time.Hour-time.Second {
		t.Errorf("requeue after %s, want the next cron time", res.RequeueAfter)
	}

	// The earlier Backup ending does not start the skipped run; the next time does.
	f.setBackupPhase(first, velerov1.BackupPhasePartiallyFailed)
	f.reconcile(f.hour(2).Add(30 * time.Minute))
	if n := len(f.backups()); n != 1 {
		t.Fatalf("the skipped run was made up: %v", f.names())
	}
	f.reconcile(f.hour(3))
	if diff := cmp.Diff([]string{first, BackupName("hourly", f.hour(3))}, f.names()); diff != "" {
		t.Fatalf("backups (-want +got):\n%s", diff)
	}
}

// After a downtime across three cron times, one Backup stands for them, named after the latest.
func TestMissedRunsAreTakenOnce(t *testing.T) {
	f := newFixture(t, hourly())
	f.reconcile(f.hour(1))
	f.setBackupPhase(BackupName("hourly", f.hour(1)), velerov1.BackupPhaseCompleted)
	f.events()

	down := f.hour(4).Add(10 * time.Minute) // hours 2, 3 and 4 passed meanwhile
	res := f.reconcile(down)
	if diff := cmp.Diff([]string{BackupName("hourly", f.hour(1)), BackupName("hourly", f.hour(4))}, f.names()); diff != "" {
		t.Fatalf("backups (-want +got):\n%s", diff)
	}
	if res.RequeueAfter != 50*time.Minute {
		t.Errorf("requeue after %s, want the next hour", res.RequeueAfter)
	}
	if ev := f.events(); !strings.Contains(ev, "every run due since "+f.hour(2).Format(time.RFC3339)) {
		t.Errorf("events %q, want the missed runs named", ev)
	}
	f.reconcile(down.Add(time.Second))
	if n := len(f.backups()); n != 2 {
		t.Fatalf("%d backups after a second pass", n)
	}
}

// skipImmediately skips the run due when a paused schedule is unpaused, is set back to false,
// and the schedule runs at its next time.
func TestSkipImmediately(t *testing.T) {
	spec := hourly()
	spec.Paused = true
	f := newFixture(t, spec)
	f.reconcile(f.hour(1))

	patch := client.MergeFrom(f.schedule.DeepCopy())
	f.schedule.Spec.Paused, f.schedule.Spec.SkipImmediately = false, ptr.To(true)
	if err := testenv.Get(t).Client.Patch(testenv.Context(t), f.schedule, patch); err != nil {
		t.Fatal(err)
	}
	now := f.hour(3).Add(20 * time.Minute) // hours 1 to 3 are overdue
	res := f.reconcile(now)
	if len(f.backups()) != 0 {
		t.Fatalf("skipImmediately ran %v", f.names())
	}
	if ls := f.schedule.Status.LastSkipped; ls == nil || !ls.Time.Equal(now) || ptr.Deref(f.schedule.Spec.SkipImmediately, true) {
		t.Fatalf("lastSkipped %v, skipImmediately %v; want now and false", ls, f.schedule.Spec.SkipImmediately)
	}
	if res.RequeueAfter != 40*time.Minute {
		t.Errorf("requeue after %s, want the next hour", res.RequeueAfter)
	}
	f.reconcile(now.Add(time.Minute))
	if len(f.backups()) != 0 {
		t.Fatalf("ran before the next time: %v", f.names())
	}
	f.reconcile(f.hour(4))
	if names := f.names(); len(names) != 1 || names[0] != BackupName("hourly", f.hour(4)) {
		t.Fatalf("backups %v, want one at the next time", names)
	}
}

// A crash between creating a run's Backup and recording it leaves the Backup behind: the next
// pass finds it by its name and records it, with no error and no second Backup. A Backup of
// that name that is not the schedule's skips the run.
func TestBackupCreatedBeforeACrashIsNotDuplicated(t *testing.T) {
	f := newFixture(t, hourly())
	c, ctx := testenv.Get(t).Client, testenv.Context(t)
	pre := newBackup(f.schedule, BackupName("hourly", f.hour(1)))
	if err := c.Create(ctx, pre); err != nil {
		t.Fatal(err)
	}
	res := f.reconcile(f.hour(1).Add(2 * time.Minute))
	if names := f.names(); len(names) != 1 || names[0] != pre.Name {
		t.Fatalf("backups %v, want only %s", names, pre.Name)
	}
	if f.schedule.Status.LastBackup == nil || f.schedule.Status.LastSkipped != nil || res.RequeueAfter != 58*time.Minute {
		t.Fatalf("status %+v, requeue after %s", f.schedule.Status, res.RequeueAfter)
	}

	foreign := &velerov1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: BackupName("hourly", f.hour(2))}}
	if err := c.Create(ctx, foreign); err != nil {
		t.Fatal(err)
	}
	f.setBackupPhase(pre.Name, velerov1.BackupPhaseCompleted)
	f.events()
	f.reconcile(f.hour(2))
	if n := len(f.backups()); n != 2 || f.schedule.Status.LastSkipped == nil {
		t.Fatalf("backups %v, lastSkipped %v", f.names(), f.schedule.Status.LastSkipped)
	}
	if ev := f.events(); !strings.Contains(ev, "is not of this schedule") {
		t.Errorf("events %q", ev)
	}
}
