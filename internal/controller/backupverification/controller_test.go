package backupverification

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/nodeconfig"
	"github.com/ferry-backup/ferry/internal/serverjob"
	"github.com/ferry-backup/ferry/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Run(m) }

type fixture struct {
	t        *testing.T
	c        client.Client
	ns       string
	clock    *clocktesting.FakePassiveClock
	recorder *record.FakeRecorder
	r        *Reconciler
}

func newFixture(t *testing.T) *fixture {
	env := testenv.Get(t)
	ctx := testenv.Context(t)
	ns := testenv.Namespace(t, "verify")
	labels := map[string]string{"app": "ferry-server"}
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ferry-server"},
		Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
				ServiceAccountName: "ferry-server",
				Containers: []corev1.Container{{Name: "ferry-server", Image: "example.invalid/ferry:1", Command: []string{"/ferry-server"},
					Args: []string{"--namespace=" + ns, "--work-dir=/var/cache/ferry"}}}}}}}
	br := &velerov1.BackupRepository{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default-kopia"},
		Spec: velerov1.BackupRepositorySpec{BackupStorageLocation: "default", RepositoryType: velerov1.RepositoryTypeKopia, VolumeNamespace: ns}}
	for _, obj := range []client.Object{dep, br} {
		if err := env.Client.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	clock := clocktesting.NewFakePassiveClock(time.Now().UTC().Truncate(time.Second))
	config := nodeconfig.Default()
	config.MaintenanceJobTimeout = 3 * time.Hour
	recorder := record.NewFakeRecorder(100)
	return &fixture{t: t, c: env.Client, ns: ns, clock: clock, recorder: recorder,
		r: &Reconciler{Client: env.Client, Recorder: recorder, Clock: clock, Config: func() nodeconfig.Config { return config },
			Pods: env.Client, ServerDeployment: "ferry-server"}}
}

// backup creates a Backup of the location "default" that ended in phase at completed.
func (f *fixture) backup(name string, phase velerov1.BackupPhase, completed time.Time) *velerov1.Backup {
	f.t.Helper()
	ctx := context.Background()
	b := &velerov1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: name}, Spec: velerov1.BackupSpec{StorageLocation: "default"}}
	if err := f.c.Create(ctx, b); err != nil {
		f.t.Fatal(err)
	}
	at := metav1.NewTime(completed)
	b.Status = velerov1.BackupStatus{Phase: phase, CompletionTimestamp: &at}
	if err := f.c.Status().Update(ctx, b); err != nil {
		f.t.Fatal(err)
	}
	return b
}

func (f *fixture) request(b *velerov1.Backup, value string) {
	f.t.Helper()
	patch := client.MergeFrom(b.DeepCopy())
	metav1.SetMetaDataAnnotation(&b.ObjectMeta, velerov1.AnnotationVerifyRequested, value)
	if err := f.c.Patch(context.Background(), b, patch); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) reconcile(b *velerov1.Backup) {
	f.t.Helper()
	if _, err := f.r.Reconcile(context.Background(), ctrl.Request{NamespacedName: client.ObjectKeyFromObject(b)}); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) jobs(b *velerov1.Backup) []batchv1.Job {
	f.t.Helper()
	jobs, err := serverjob.List(context.Background(), f.c, f.ns, client.MatchingLabels{LabelBackupUID: string(b.UID)})
	if err != nil {
		f.t.Fatal(err)
	}
	return jobs
}

// last reads the result recorded on the object.
func (f *fixture) last(obj client.Object) (velerov1.BackupVerification, bool) {
	f.t.Helper()
	if err := f.c.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
		f.t.Fatal(err)
	}
	return lastVerification(obj.GetAnnotations())
}

func (f *fixture) events() []string {
	var out []string
	for {
		select {
		case e := <-f.recorder.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

// endJob ends the Job as its pod, the kubelet and the Job controller would; a nil result is a
// pod killed before it said anything.
func endJob(t *testing.T, c client.Client, j *batchv1.Job, res *velerov1.BackupVerification, at time.Time) {
	t.Helper()
	ctx := context.Background()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: j.Namespace, Name: j.Name + "-x", Labels: map[string]string{batchv1.JobNameLabel: j.Name}},
		Spec: j.Spec.Template.Spec}
	pod.Spec.ServiceAccountName = ""
	if err := c.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	terminated := &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "OOMKilled"}
	if res != nil {
		terminated.ExitCode, terminated.Reason, terminated.Message = 1, "Error", "volume x: /a: damaged\n"+ResultLine(*res)+"\n"
	}
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: JobContainer, State: corev1.ContainerState{Terminated: terminated}}}
	if err := c.Status().Update(ctx, pod); err != nil {
		t.Fatal(err)
	}
	now := metav1.NewTime(at)
	j.Status.StartTime = &now
	j.Status.Failed = 1
	j.Status.Ready, j.Status.Terminating = new(int32), new(int32)
	j.Status.Conditions = []batchv1.JobCondition{
		{Type: batchv1.JobFailureTarget, Status: corev1.ConditionTrue, Reason: batchv1.JobReasonBackoffLimitExceeded, LastTransitionTime: now},
		{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: batchv1.JobReasonBackoffLimitExceeded, Message: "Job has reached the specified backoff limit", LastTransitionTime: now}}
	if err := c.Status().Update(ctx, j); err != nil {
		t.Fatal(err)
	}
}

// A request starts one Job, copied from the server's Deployment, and no second one while it
// runs or once it is answered; the Job's result lands on the Backup and the repository, with a
// Warning Event naming the damaged volume and file; a new request starts a new Job; a Job
// killed before it said anything answers its request as incomplete.
func TestARequestRunsOneJobAndItsResultIsRecorded(t *testing.T) {
	f := newFixture(t)
	b := f.backup("nightly", velerov1.BackupPhaseCompleted, f.clock.Now())
	first := FormatRequest(25, f.clock.Now())
	f.request(b, first)
	f.reconcile(b)
	f.reconcile(b)
	jobs := f.jobs(b)
	if len(jobs) != 1 {
		t.Fatalf("%d Jobs after two reconciles of one request, want 1", len(jobs))
	}
	j := jobs[0]
	c := j.Spec.Template.Spec.Containers[0]
	want := []string{"verify", "--namespace=" + f.ns, "--backup=nightly", "--location=default", "--percent=25", "--request=" + first, "--work-dir=/var/cache/ferry"}
	if c.Name != JobContainer || c.Image != "example.invalid/ferry:1" || !slices.Equal(c.Args, want) || !strings.HasPrefix(j.Name, "nightly-verify-") ||
		*j.Spec.ActiveDeadlineSeconds != 3*3600 || j.Spec.Template.Spec.ServiceAccountName != "ferry-server" || j.OwnerReferences[0].UID != b.UID {
		t.Fatalf("Job %s: container %s %s %v, deadline %d, owners %v", j.Name, c.Name, c.Image, c.Args, *j.Spec.ActiveDeadlineSeconds, j.OwnerReferences)
	}

	res := velerov1.BackupVerification{Request: first, Backup: "nightly", Percent: 25, Completed: true, Errors: 2,
		Start: f.clock.Now(), End: f.clock.Now().Add(time.Minute),
		Volumes: []velerov1.VolumeVerification{
			{Volume: "app/web-0/data", SnapshotID: "k1", Files: 10, FilesRead: 3, BytesRead: 300, Errors: 2,
				FirstErrors: []string{"/db/table.ibd: content c1 in pack p77: invalid checksum", "/db/log: content c2 in pack p77: invalid checksum"}},
			{Volume: "app/web-0/config", SnapshotID: "k2", Files: 4, FilesRead: 1, BytesRead: 10}}}
	endJob(t, f.c, &j, &res, f.clock.Now().Add(time.Minute))
	f.reconcile(b)
	got, ok := f.last(b)
	if !ok || got.Request != first || got.Errors != 2 || got.Job != j.Name || len(got.Volumes) != 2 || !got.Failed() {
		t.Fatalf("recorded on the Backup: %+v (found %t)", got, ok)
	}
	br := &velerov1.BackupRepository{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "default-kopia"}}
	if onRepo, ok := f.last(br); !ok || onRepo.Request != first || onRepo.Backup != "nightly" {
		t.Errorf("recorded on the repository: %+v (found %t)", onRepo, ok)
	}
	events := f.events()
	if len(events) != 1 || !strings.Contains(events[0], "Warning VerificationFailed volume app/web-0/data (snapshot k1): 2 damaged entries: /db/table.ibd: content c1 in pack p77") {
		t.Errorf("events = %q", events)
	}
	f.reconcile(b)
	if n := len(f.jobs(b)); n != 1 {
		t.Fatalf("%d Jobs after the request was answered, want 1", n)
	}

	second := FormatRequest(100, f.clock.Now().Add(time.Hour))
	f.request(b, second)
	f.reconcile(b)
	jobs = f.jobs(b)
	i := slices.IndexFunc(jobs, func(j batchv1.Job) bool { return j.Annotations[AnnotationRequest] == second })
	if len(jobs) != 2 || i < 0 {
		t.Fatalf("after a new request: %d Jobs, none for it", len(jobs))
	}
	endJob(t, f.c, &jobs[i], nil, f.clock.Now().Add(2*time.Hour))
	f.reconcile(b)
	got, _ = f.last(b)
	if got.Request != second || got.Completed || got.Percent != 100 || !strings.Contains(got.Message, "OOMKilled (exit code 137)") {
		t.Fatalf("a killed Job recorded %+v", got)
	}
	if events := f.events(); len(events) != 1 || !strings.Contains(events[0], "Warning VerificationIncomplete") {
		t.Errorf("events = %q", events)
	}
}

// A request the server cannot act on is answered at once, without a Job, saying why: the CLI
// waiting for it does not hang.
func TestARequestThatCannotRunIsAnsweredAtOnce(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct{ name, value, want string }{
		{"running", FormatRequest(10, f.clock.Now()), `is "InProgress": only Completed and PartiallyFailed backups can be verified`},
		{"bad-percent", "200@" + f.clock.Now().Format(time.RFC3339), "the percent must be a number from 0 to 100"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			phase := velerov1.BackupPhaseInProgress
			if tc.name != "running" {
				phase = velerov1.BackupPhaseCompleted
			}
			b := f.backup(tc.name, phase, f.clock.Now())
			f.request(b, tc.value)
			f.reconcile(b)
			got, ok := f.last(b)
			if !ok || got.Request != tc.value || got.Completed || !strings.Contains(got.Message, tc.want) || len(f.jobs(b)) != 0 {
				t.Fatalf("recorded %+v (found %t), %d Jobs", got, ok, len(f.jobs(b)))
			}
		})
	}
}

// The repository's verify-every annotation requests the verification of the latest completed
// backup of its location when one is due, and not again before the period has passed.
func TestTheScheduleRequestsTheLatestCompletedBackup(t *testing.T) {
	f := newFixture(t)
	now := f.clock.Now()
	older := f.backup("older", velerov1.BackupPhaseCompleted, now.Add(-2*time.Hour))
	latest := f.backup("latest", velerov1.BackupPhaseCompleted, now.Add(-time.Hour))
	f.backup("failed", velerov1.BackupPhaseFailed, now)
	br := &velerov1.BackupRepository{}
	if err := f.c.Get(context.Background(), client.ObjectKey{Namespace: f.ns, Name: "default-kopia"}, br); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(br.DeepCopy())
	br.Annotations = map[string]string{velerov1.AnnotationVerifyEvery: "24h", velerov1.AnnotationVerifyPercent: "5"}
	if err := f.c.Patch(context.Background(), br, patch); err != nil {
		t.Fatal(err)
	}
	s := &Scheduler{Client: f.c, Clock: f.clock}
	req := ctrl.Request{NamespacedName: client.ObjectKeyFromObject(br)}
	res, err := s.Reconcile(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if got := annotation(t, f.c, latest); got != FormatRequest(5, now) || res.RequeueAfter != 24*time.Hour {
		t.Fatalf("latest backup's request = %q, requeue after %v", got, res.RequeueAfter)
	}
	if got := annotation(t, f.c, older); got != "" {
		t.Errorf("the older backup was asked too: %q", got)
	}
	f.clock.SetTime(now.Add(time.Hour))
	res, err = s.Reconcile(context.Background(), req)
	if err != nil || res.RequeueAfter != 23*time.Hour || annotation(t, f.c, latest) != FormatRequest(5, now) {
		t.Fatalf("an hour later: requeue after %v (%v), request %q", res.RequeueAfter, err, annotation(t, f.c, latest))
	}
	f.clock.SetTime(now.Add(25 * time.Hour))
	if _, err := s.Reconcile(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if got := annotation(t, f.c, latest); got != FormatRequest(5, now.Add(25*time.Hour)) {
		t.Fatalf("a day later the request is %q", got)
	}
}

func annotation(t *testing.T, c client.Client, b *velerov1.Backup) string {
	t.Helper()
	if err := c.Get(context.Background(), client.ObjectKeyFromObject(b), b); err != nil {
		t.Fatal(err)
	}
	return b.Annotations[velerov1.AnnotationVerifyRequested]
}

// A result too large for a termination message keeps every count and as many error texts as fit.
func TestResultLineFitsATerminationMessage(t *testing.T) {
	res := velerov1.BackupVerification{Request: "10@x", Backup: "b", Completed: true}
	for i := range 40 {
		v := velerov1.VolumeVerification{Volume: fmt.Sprintf("ns/pod-%d/data", i), SnapshotID: strings.Repeat("k", 32), Files: 1000, Errors: 12}
		for range 10 {
			v.FirstErrors = append(v.FirstErrors, "/some/path/file.bin: "+strings.Repeat("x", 400))
		}
		res.Errors += v.Errors
		res.Volumes = append(res.Volumes, v)
	}
	line := ResultLine(res)
	if len(line) > serverjob.MessageLimit {
		t.Fatalf("line of %d bytes", len(line))
	}
	got, ok := ParseResult("log\n" + line + "\n")
	if !ok || got.Errors != res.Errors || len(got.Volumes) == 0 || got.Volumes[0].Errors != 12 {
		t.Fatalf("parsed %+v (ok %t)", got, ok)
	}
	small := ResultLine(velerov1.BackupVerification{Volumes: []velerov1.VolumeVerification{{Volume: "a", FirstErrors: []string{"/x: bad"}}}})
	var back struct{ Volumes []velerov1.VolumeVerification }
	if err := json.Unmarshal([]byte(strings.TrimPrefix(small, resultMarker)), &back); err != nil || back.Volumes[0].FirstErrors[0] != "/x: bad" {
		t.Fatalf("small result %q: %v", small, err)
	}
}
