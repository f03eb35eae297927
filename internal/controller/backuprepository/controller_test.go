package backuprepository

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/ferry-backup/ferry/api/shared"
	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/nodeconfig"
	"github.com/ferry-backup/ferry/internal/repoaccess"
	"github.com/ferry-backup/ferry/internal/repository"
	"github.com/ferry-backup/ferry/internal/serverjob"
	"github.com/ferry-backup/ferry/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Run(m) }

// The schedule decides when maintenance runs, failed or not: a failed run is retried after a
// backoff, not at once, and a successful one after maintenanceFrequency. Each run is a Job; a
// reconcile that is not due starts none and asks to come back when it is, and one with a Job
// running starts no other. A Job's result is read from its pod's termination message, and a
// pod that said nothing (killed) makes a failed run saying so.
func TestMaintenanceRunsInJobsWhenTheScheduleSays(t *testing.T) {
	env := testenv.Get(t)
	ctx := testenv.Context(t)
	ns := testenv.Namespace(t, "maintenance")
	r, br, clock, start := newMaintained(t, ns)
	req := ctrl.Request{NamespacedName: client.ObjectKeyFromObject(br)}
	reconcile := func(at time.Duration) ctrl.Result {
		t.Helper()
		clock.SetTime(start.Add(at))
		res, err := r.Reconcile(ctx, req)
		if err != nil {
			t.Fatalf("at %v: %v", at, err)
		}
		return res
	}
	jobs := func() []batchv1.Job {
		t.Helper()
		list := &batchv1.JobList{}
		if err := env.Client.List(ctx, list, client.InNamespace(ns), client.MatchingLabels{LabelRepository: br.Name}); err != nil {
			t.Fatal(err)
		}
		return list.Items
	}
	// step reconciles at `at`; when a Job starts, it ends as the outcome says ("" for no Job
	// expected), and a second reconcile records it.
	step := func(at time.Duration, outcome string, wantRuns []string, wantRequeue time.Duration) {
		t.Helper()
		before := len(jobs())
		res := reconcile(at)
		all := jobs()
		switch {
		case outcome == "" && len(all) != before:
			t.Fatalf("at %v: a Job started when none was due", at)
		case outcome != "":
			if len(all) != before+1 {
				t.Fatalf("at %v: %d Jobs, want a new one", at, len(all))
			}
			j := running(t, all)
			checkJob(t, j, ns)
			if again := reconcile(at); again != (ctrl.Result{}) || len(jobs()) != len(all) {
				t.Fatalf("at %v: with Job %s running: %+v, %d Jobs; want no other and no requeue", at, j.Name, again, len(jobs()))
			}
			endJob(t, env.Client, j, outcome, start.Add(at))
			res = reconcile(at)
		}
		if err := env.Client.Get(ctx, req.NamespacedName, br); err != nil {
			t.Fatal(err)
		}
		var runs []string
		for _, m := range br.Status.RecentMaintenance {
			runs = append(runs, fmt.Sprintf("%s@%v", m.Result, m.CompleteTimestamp.Sub(start)))
		}
		if fmt.Sprint(runs) != fmt.Sprint(wantRuns) || res.RequeueAfter != wantRequeue {
			t.Fatalf("at %v: runs %v, requeue after %v; want %v, requeue after %v (%s)", at, runs, res.RequeueAfter,
				wantRuns, wantRequeue, describe(br.Status.RecentMaintenance))
		}
	}
	step(0, "error", []string{"Failed@0s"}, retryFailedMaintenance)
	step(time.Second, "", []string{"Failed@0s"}, retryFailedMaintenance-time.Second)
	step(5*time.Minute, "killed", []string{"Failed@0s", "Failed@5m0s"}, 10*time.Minute)
	if m := br.Status.RecentMaintenance[1].Message; !strings.Contains(m, "OOMKilled (exit code 137)") || !strings.Contains(m, "quick maintenance Job") {
		t.Errorf("a killed Job's run says %q, want what Kubernetes knows", m)
	}
	step(14*time.Minute, "", []string{"Failed@0s", "Failed@5m0s"}, time.Minute)
	ran := 15 * time.Minute
	step(ran, "success", []string{"Failed@0s", "Failed@5m0s", "Succeeded@15m0s"}, time.Hour)
	step(ran+time.Minute, "", []string{"Failed@0s", "Failed@5m0s", "Succeeded@15m0s"}, time.Hour-time.Minute)
	if br.Status.LastMaintenanceTime == nil || !br.Status.LastMaintenanceTime.Time.Equal(start.Add(ran)) {
		t.Fatalf("lastMaintenanceTime = %v, want %v", br.Status.LastMaintenanceTime, start.Add(ran))
	}
	if m := br.Status.RecentMaintenance[2].Message; m != "quick maintenance: storage 1.0 KiB" {
		t.Errorf("the successful run says %q, want the Job's own message", m)
	}
	checkStats(t, br, start.Add(ran))
	// Recorded Jobs beyond the latest three go.
	step(ran+time.Hour, "success", []string{"Failed@5m0s", "Succeeded@15m0s", "Succeeded@1h15m0s"}, time.Hour)
	if n := len(jobs()); n != keepJobs {
		t.Errorf("%d maintenance Jobs kept, want %d", n, keepJobs)
	}
	// Two hours later maintenance is an hour behind its schedule (a Job starts).
	if lag := gauge(t, "ferry_repository_maintenance_lag_seconds", br.Name, ""); lag != 0 {
		t.Errorf("lag = %v on schedule, want 0", lag)
	}
	reconcile(ran + 3*time.Hour)
	if lag := gauge(t, "ferry_repository_maintenance_lag_seconds", br.Name, ""); lag != 3600 {
		t.Errorf("lag = %v an hour late, want 3600", lag)
	}
	// A repository that is gone takes its metrics along.
	if err := env.Client.Delete(ctx, br); err != nil {
		t.Fatal(err)
	}
	reconcile(ran + 3*time.Hour)
	if size, lag := gauge(t, "ferry_repository_size_bytes", br.Name, ""), gauge(t, "ferry_repository_maintenance_lag_seconds", br.Name, ""); size != -1 || lag != -1 {
		t.Errorf("size %v, lag %v of a deleted repository; want none", size, lag)
	}
}

// checkStats checks what a successful run recorded of the stats its Job reported: the
// annotation and the metrics.
func checkStats(t *testing.T, br *velerov1.BackupRepository, end time.Time) {
	t.Helper()
	stats, ok := br.RepositoryStats()
	if !ok || !stats.Measured.Equal(end) || stats.SizeBytes != 6<<20 || stats.Snapshots != 2 || stats.DedupRatio != 2 ||
		stats.ReclaimableBytes != 2<<20 || stats.Blobs[repository.BlobIndex] != 3 || stats.LastQuick == nil || !stats.LastQuick.Equal(end) || stats.LastFull != nil {
		t.Errorf("stats annotation = %s", br.Annotations[velerov1.AnnotationRepositoryStats])
	}
	for _, m := range []struct {
		name      string
		got, want float64
	}{
		{"size", gauge(t, "ferry_repository_size_bytes", br.Name, ""), 6 << 20},
		{"index blobs", gauge(t, "ferry_repository_blobs", br.Name, "kind=index"), 3},
		{"snapshots", gauge(t, "ferry_repository_snapshots", br.Name, ""), 2},
		{"dedup ratio", gauge(t, "ferry_repository_dedup_ratio", br.Name, ""), 2},
		{"reclaimable", gauge(t, "ferry_repository_reclaimable_bytes", br.Name, ""), 2 << 20},
		{"last quick", gauge(t, "ferry_repository_last_maintenance_timestamp_seconds", br.Name, "mode=quick"), float64(end.Unix())},
	} {
		if m.got != m.want {
			t.Errorf("metric %s = %v, want %v", m.name, m.got, m.want)
		}
	}
}

// gauge reads the metric of the repository (of location "default") from the registry
// ferry-server serves; extra is one more label, name=value. -1 when there is none.
func gauge(t *testing.T, name, repository, extra string) float64 {
	t.Helper()
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]bool{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()+"="+l.GetValue()] = true
			}
			if labels["location=default"] && labels["repository="+repository] && (extra == "" || labels[extra]) {
				return m.GetGauge().GetValue()
			}
		}
	}
	return -1
}

// running is the one Job that has not ended.
func running(t *testing.T, jobs []batchv1.Job) *batchv1.Job {
	t.Helper()
	var found *batchv1.Job
	for i := range jobs {
		if ended, _ := serverjob.Ended(&jobs[i]); !ended {
			if found != nil {
				t.Fatalf("two maintenance Jobs running: %s and %s", found.Name, jobs[i].Name)
			}
			found = &jobs[i]
		}
	}
	if found == nil {
		t.Fatal("no maintenance Job running")
	}
	return found
}

// checkJob checks what a maintenance Job copies from the server's Deployment and what it adds.
func checkJob(t *testing.T, j *batchv1.Job, ns string) {
	t.Helper()
	pod := j.Spec.Template.Spec
	c := pod.Containers[0]
	want := []string{"maintain", "--namespace=" + ns, "--repository=default-kopia", "--mode=quick", "--work-dir=/var/cache/ferry"}
	if c.Name != JobContainer || c.Image != "example.invalid/ferry:1" || c.Command[0] != "/ferry-server" || fmt.Sprint(c.Args) != fmt.Sprint(want) ||
		len(c.Env) != 1 || pod.ServiceAccountName != "ferry-server" || pod.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("maintenance Job pod: %+v", pod)
	}
	if *j.Spec.BackoffLimit != 0 || *j.Spec.ActiveDeadlineSeconds != 7200 || j.Labels[LabelMode] != "quick" ||
		len(j.OwnerReferences) != 1 || j.OwnerReferences[0].Kind != "BackupRepository" || j.Spec.Template.Labels["app"] != "" {
		t.Errorf("maintenance Job: %+v", j)
	}
}

// endJob ends the Job as its pod, the kubelet and the Job controller would: "success" and
// "error" report a result, "killed" reports none.
func endJob(t *testing.T, c client.Client, j *batchv1.Job, outcome string, at time.Time) {
	t.Helper()
	ctx := context.Background()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: j.Namespace, Name: j.Name + "-x", Labels: map[string]string{batchv1.JobNameLabel: j.Name}},
		Spec: j.Spec.Template.Spec}
	pod.Spec.ServiceAccountName = ""
	if err := c.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	res := JobResult{Mode: "quick", Succeeded: outcome == "success", Start: at, End: at}
	terminated := &corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error"}
	switch outcome {
	case "success":
		res.Message, terminated.ExitCode, terminated.Reason = "quick maintenance: storage 1.0 KiB", 0, "Completed"
		res.Stats = &repository.Stats{SizeBytes: 6 << 20, Snapshots: 2, LogicalBytes: 8 << 20, LiveBytes: 4 << 20, Contents: 10,
			Blobs:     map[string]int64{repository.BlobPack: 2, repository.BlobMetadataPack: 1, repository.BlobIndex: 3, repository.BlobOther: 4},
			BlobBytes: map[string]int64{repository.BlobPack: 5 << 20, repository.BlobMetadataPack: 1 << 20, repository.BlobIndex: 100, repository.BlobOther: 100}}
		terminated.Message = res.Line() + "\n"
	case "error":
		res.Message = "quick maintenance failed: clock skew"
		terminated.Message = "some log line\n" + res.Line() + "\n"
	case "killed":
		terminated.ExitCode, terminated.Reason = 137, "OOMKilled"
	}
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: JobContainer, State: corev1.ContainerState{Terminated: terminated}}}
	if err := c.Status().Update(ctx, pod); err != nil {
		t.Fatal(err)
	}
	now := metav1.NewTime(at)
	j.Status.StartTime = &now
	j.Status.Ready, j.Status.Terminating = new(int32), new(int32)
	if outcome == "success" {
		j.Status.Succeeded, j.Status.CompletionTime = 1, &now
		j.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, LastTransitionTime: now}}
	} else {
		j.Status.Failed = 1
		j.Status.Conditions = []batchv1.JobCondition{
			{Type: batchv1.JobFailureTarget, Status: corev1.ConditionTrue, Reason: batchv1.JobReasonBackoffLimitExceeded, LastTransitionTime: now},
			{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: batchv1.JobReasonBackoffLimitExceeded, Message: "Job has reached the specified backoff limit", LastTransitionTime: now}}
	}
	if err := c.Status().Update(ctx, j); err != nil {
		t.Fatal(err)
	}
}

func describe(runs []velerov1.BackupRepositoryMaintenanceStatus) string {
	var parts []string
	for _, m := range runs {
		parts = append(parts, fmt.Sprintf("%s %s", m.Result, m.Message))
	}
	return strings.Join(parts, "; ")
}

// Failures in a row wait longer each time, up to the maintenance frequency; a success resets it.
func TestNextMaintenance(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *metav1.Time { m := metav1.NewTime(t0.Add(d)); return &m }
	run := func(result velerov1.BackupRepositoryMaintenanceResult, d time.Duration) velerov1.BackupRepositoryMaintenanceStatus {
		return velerov1.BackupRepositoryMaintenanceStatus{Result: result, CompleteTimestamp: at(d)}
	}
	ok, failed := velerov1.BackupRepositoryMaintenanceSucceeded, velerov1.BackupRepositoryMaintenanceFailed
	for _, tc := range []struct {
		name    string
		last    *metav1.Time
		history []velerov1.BackupRepositoryMaintenanceStatus
		want    time.Time
	}{
		{"never ran", nil, nil, time.Time{}},
		{"succeeded", at(0), []velerov1.BackupRepositoryMaintenanceStatus{run(ok, 0)}, t0.Add(time.Hour)},
		{"one failure", nil, []velerov1.BackupRepositoryMaintenanceStatus{run(failed, 0)}, t0.Add(5 * time.Minute)},
		{"three failures", nil, []velerov1.BackupRepositoryMaintenanceStatus{run(failed, 0), run(failed, time.Minute), run(failed, 2*time.Minute)},
			t0.Add(22 * time.Minute)},
		{"many failures wait at most the frequency", at(0), []velerov1.BackupRepositoryMaintenanceStatus{run(failed, 1), run(failed, 2),
			run(failed, 3), run(failed, 4), run(failed, 5)}, t0.Add(time.Hour + 5)},
		{"a failure after a success", at(0), []velerov1.BackupRepositoryMaintenanceStatus{run(ok, 0), run(failed, time.Hour)},
			t0.Add(time.Hour + 5*time.Minute)},
		{"a success after failures", at(time.Hour), []velerov1.BackupRepositoryMaintenanceStatus{run(failed, 0), run(ok, time.Hour)},
			t0.Add(2 * time.Hour)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			br := &velerov1.BackupRepository{Status: velerov1.BackupRepositoryStatus{LastMaintenanceTime: tc.last, RecentMaintenance: tc.history}}
			if got := nextMaintenance(br, time.Hour); !got.Equal(tc.want) {
				t.Fatalf("next maintenance at %v, want %v", got, tc.want)
			}
		})
	}
}

// A maintenanceFrequency Go cannot read keeps the default schedule, and the status says so.
func TestAnInvalidFrequencyKeepsTheDefault(t *testing.T) {
	br := &velerov1.BackupRepository{Spec: velerov1.BackupRepositorySpec{MaintenanceFrequency: shared.Duration{Invalid: "9999999999h"}}}
	note := frequencyNote(br)
	if !strings.Contains(note, `spec.maintenanceFrequency: "9999999999h" is not a duration`) || !strings.Contains(note, "every 1h0m0s, the default") {
		t.Errorf("note = %q", note)
	}
	if note := frequencyNote(&velerov1.BackupRepository{}); note != "" {
		t.Errorf("note for an empty frequency = %q", note)
	}
}

// A result with the longest message and stats of large numbers still fits a termination
// message, and reads back whole.
func TestResultLineFitsTheTerminationMessage(t *testing.T) {
	big := int64(1) << 62
	stats := &repository.Stats{SizeBytes: big, Snapshots: big, LogicalBytes: big, LiveBytes: big, Contents: big, DeletedContents: big, DeletedBytes: big,
		Blobs:     map[string]int64{repository.BlobPack: big, repository.BlobMetadataPack: big, repository.BlobIndex: big, repository.BlobOther: big},
		BlobBytes: map[string]int64{repository.BlobPack: big, repository.BlobMetadataPack: big, repository.BlobIndex: big, repository.BlobOther: big}}
	for _, msg := range []string{strings.Repeat("é", 4000), strings.Repeat("<", 4000)} {
		res := JobResult{Mode: "full", Succeeded: true, Message: msg, Start: time.Now(), End: time.Now(), Stats: stats, Freed: -big}
		line := res.Line()
		if len(line)+1 > serverjob.MessageLimit {
			t.Fatalf("result line of %d bytes, over the termination message's %d", len(line), serverjob.MessageLimit)
		}
		back, ok := ParseJobResult(line)
		if !ok || back.Stats == nil || back.Stats.BlobBytes[repository.BlobOther] != big || back.Freed != -big || len(back.Message) < 300 {
			t.Errorf("read back %+v, %v", back, ok)
		}
	}
}

// newMaintained makes a location, the server's Deployment and a BackupRepository in ns, whose
// full maintenance is not due, and a Reconciler with a fake clock at start.
func newMaintained(t *testing.T, ns string) (*Reconciler, *velerov1.BackupRepository, *clocktesting.FakePassiveClock, time.Time) {
	t.Helper()
	env := testenv.Get(t)
	ctx := testenv.Context(t)
	serverLabels := map[string]string{"app": "ferry-server"}
	for _, obj := range []client.Object{
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: repoaccess.PasswordSecret},
			StringData: map[string]string{repoaccess.PasswordKey: "maintenance-test-password"}},
		&velerov1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default"},
			Spec: velerov1.BackupStorageLocationSpec{Provider: velerov1.ProviderFilesystem, Config: map[string]string{"path": t.TempDir()},
				StorageType: velerov1.StorageType{ObjectStorage: &velerov1.ObjectStorageLocation{Bucket: "b"}}}},
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ferry-server"},
			Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: serverLabels},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: serverLabels}, Spec: corev1.PodSpec{
					ServiceAccountName: "ferry-server", AutomountServiceAccountToken: new(bool),
					Containers: []corev1.Container{{Name: "ferry-server", Image: "example.invalid/ferry:1", Command: []string{"/ferry-server"},
						Args: []string{"--namespace=" + ns, "--work-dir=/var/cache/ferry", "--leader-elect"},
						Env:  []corev1.EnvVar{{Name: "AWS_SHARED_CREDENTIALS_FILE", Value: "/credentials/cloud"}}}}}}}},
	} {
		if err := env.Client.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	br := &velerov1.BackupRepository{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default-kopia"},
		Spec: velerov1.BackupRepositorySpec{BackupStorageLocation: "default", RepositoryType: velerov1.RepositoryTypeKopia,
			VolumeNamespace: ns, MaintenanceFrequency: shared.Duration{Duration: time.Hour}}}
	if err := env.Client.Create(ctx, br); err != nil {
		t.Fatal(err)
	}
	// Full maintenance is not due (it ran just before): every run here is a quick one.
	start := time.Now().UTC().Truncate(time.Second)
	br.Annotations = map[string]string{AnnotationLastFull: start.Add(-time.Minute).Format(time.RFC3339)}
	if err := env.Client.Update(ctx, br); err != nil {
		t.Fatal(err)
	}
	clock := clocktesting.NewFakePassiveClock(start)
	config := nodeconfig.Default()
	config.MaintenanceJobTimeout = 2 * time.Hour
	r := &Reconciler{Client: env.Client, Clock: clock, Config: func() nodeconfig.Config { return config }, Pods: env.Client, ServerDeployment: "ferry-server",
		Repositories: repoaccess.New(repoaccess.Options{Client: env.Client, Namespace: ns, WorkDir: t.TempDir(), Create: true})}
	t.Cleanup(func() { r.Repositories.Close(context.Background()) })
	return r, br, clock, start
}
