package backuprepository

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/testenv"
)

// A maintenance request runs once, in a Job of its own, as soon as no other maintenance Job of
// the repository runs, whatever the schedule says; its result is recorded as a scheduled run's
// and answered in an annotation. A request that cannot be read is answered at once, with no Job.
func TestARequestRunsOneMaintenanceNow(t *testing.T) {
	env := testenv.Get(t)
	ctx := testenv.Context(t)
	ns := testenv.Namespace(t, "maintenance-request")
	r, br, clock, start := newMaintained(t, ns)
	req := ctrl.Request{NamespacedName: client.ObjectKeyFromObject(br)}
	reconcile := func(at time.Duration) []batchv1.Job {
		t.Helper()
		clock.SetTime(start.Add(at))
		if _, err := r.Reconcile(ctx, req); err != nil {
			t.Fatalf("at %v: %v", at, err)
		}
		list := &batchv1.JobList{}
		if err := env.Client.List(ctx, list, client.InNamespace(ns), client.MatchingLabels{LabelRepository: br.Name}); err != nil {
			t.Fatal(err)
		}
		if err := env.Client.Get(ctx, req.NamespacedName, br); err != nil {
			t.Fatal(err)
		}
		return list.Items
	}
	ask := func(value string) {
		t.Helper()
		patch := client.MergeFrom(br.DeepCopy())
		metav1.SetMetaDataAnnotation(&br.ObjectMeta, velerov1.AnnotationMaintenanceRequested, value)
		if err := env.Client.Patch(ctx, br, patch); err != nil {
			t.Fatal(err)
		}
	}
	answer := func() velerov1.MaintenanceAnswer {
		t.Helper()
		a, ok := maintenanceAnswer(br)
		if !ok {
			t.Fatalf("no answer: %q", br.Annotations[velerov1.AnnotationMaintenanceAnswer])
		}
		return a
	}

	// The scheduled run starts (none ran); a request made meanwhile waits for its end.
	scheduled := running(t, reconcile(0))
	request := "full@" + start.Format(time.RFC3339Nano)
	ask(request)
	if jobs := reconcile(time.Second); len(jobs) != 1 {
		t.Fatalf("%d Jobs with the scheduled one running, want it alone", len(jobs))
	}
	endJob(t, env.Client, scheduled, "success", start.Add(time.Minute))
	requested := running(t, reconcile(time.Minute))
	if requested.Name == scheduled.Name || requested.Labels[LabelMode] != "full" || requested.Annotations[AnnotationRequest] != request {
		t.Fatalf("after the scheduled run: Job %s, mode %q, request %q; want a full run answering %q",
			requested.Name, requested.Labels[LabelMode], requested.Annotations[AnnotationRequest], request)
	}
	if jobs := reconcile(2 * time.Minute); len(jobs) != 2 {
		t.Fatalf("%d Jobs: a running request started another", len(jobs))
	}
	endJob(t, env.Client, requested, "error", start.Add(3*time.Minute))
	reconcile(3 * time.Minute)
	a := answer()
	if a.Request != request || a.Succeeded || a.Job != requested.Name || a.Mode != "full" || !strings.Contains(a.Message, "clock skew") {
		t.Errorf("answer %+v, want the failed run of Job %s", a, requested.Name)
	}
	runs := br.Status.RecentMaintenance
	if len(runs) != 2 || runs[1].Result != velerov1.BackupRepositoryMaintenanceFailed {
		t.Errorf("recent maintenance %s, want the scheduled success and the requested failure", describe(runs))
	}
	// Answered: it runs once.
	if jobs := reconcile(4 * time.Minute); len(jobs) != 2 {
		t.Errorf("%d Jobs after the answer, want no new one", len(jobs))
	}

	ask("weekly@" + start.Format(time.RFC3339))
	if jobs := reconcile(5 * time.Minute); len(jobs) != 2 {
		t.Errorf("%d Jobs for an unreadable request, want no new one", len(jobs))
	}
	if a := answer(); a.Succeeded || a.Job != "" || !strings.Contains(a.Message, "the mode must be quick or full") {
		data, _ := json.Marshal(a)
		t.Errorf("answer to an unreadable request: %s", data)
	}
}
