package backuprepository

import (
	"context"
	"fmt"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/repository"
	"github.com/ferry-backup/ferry/internal/serverjob"
)

// Labels and annotations of maintenance Jobs.
const (
	// LabelRepository names the BackupRepository a maintenance Job maintains.
	LabelRepository = "ferry.io/backup-repository"
	// LabelMode is the Job's maintenance mode, quick or full.
	LabelMode = "ferry.io/maintenance-mode"
	// AnnotationRecorded marks a finished Job whose result is in the repository's status.
	AnnotationRecorded = "ferry.io/maintenance-recorded"
	// JobContainer is the name of the maintenance Job's container.
	JobContainer = "maintain"
	// keepJobs is how many finished Jobs of a repository are kept to look at (Velero keeps 3).
	keepJobs = 3
	// resultMarker starts the line that carries a Job's result.
	resultMarker = "ferry-maintenance-result "
)

// JobResult is what a maintenance Job reports, as its container's termination message (and as
// the last line of its log, which the termination message falls back to).
type JobResult struct {
	Mode      string    `json:"mode"`
	Succeeded bool      `json:"succeeded"`
	Message   string    `json:"message"`
	Start     time.Time `json:"start"`
	End       time.Time `json:"end"`
	// Stats measure the repository after a successful run; nil when the run failed or the
	// measuring did (the message says why).
	Stats *repository.Stats `json:"stats,omitempty"`
	// Freed is the storage the run freed (before less after), which may be negative.
	Freed int64 `json:"freed,omitempty"`
}

// Line encodes the result as one line that fits a termination message (4096 bytes, the line's
// newline included): the message is cut, halving until the encoded line fits, since JSON may
// escape a byte as six.
func (r JobResult) Line() string {
	for limit := 3000; ; limit /= 2 {
		if len(r.Message) > limit {
			r.Message = strings.ToValidUTF8(r.Message[:limit], "") + "…"
		}
		if line := serverjob.Line(resultMarker, r); len(line) < serverjob.MessageLimit || limit == 0 {
			return line
		}
	}
}

// ParseJobResult finds the last result line in text; false when there is none.
func ParseJobResult(text string) (JobResult, bool) {
	var r JobResult
	ok := serverjob.Parse(text, resultMarker, &r)
	return r, ok
}

// jobs returns the repository's maintenance Jobs, oldest first.
func (r *Reconciler) jobs(ctx context.Context, br *velerov1.BackupRepository) ([]batchv1.Job, error) {
	jobs, err := serverjob.List(ctx, r.Client, br.Namespace, client.MatchingLabels{LabelRepository: br.Name})
	if err != nil {
		return nil, fmt.Errorf("list the maintenance Jobs of %s: %w", br.Name, err)
	}
	return jobs, nil
}

// jobResult reads a finished Job's result from its pod's termination message; a pod that said
// nothing (killed for memory, past its deadline, evicted, never started) makes a failed result
// that says what Kubernetes knows.
func (r *Reconciler) jobResult(ctx context.Context, j *batchv1.Job, failed bool) (JobResult, error) {
	res := JobResult{Mode: j.Labels[LabelMode]}
	res.Start, res.End = serverjob.Times(j, r.Clock.Now())
	var reported JobResult
	found, said, err := serverjob.Report(ctx, r.Pods, j, JobContainer, func(msg string) bool {
		var ok bool
		reported, ok = ParseJobResult(msg)
		return ok
	})
	if err != nil || found {
		return reported, err
	}
	if !failed {
		// The command exits 0 only when maintenance succeeded.
		res.Succeeded = true
		res.Message = fmt.Sprintf("%s maintenance Job %s completed; its result message could not be read", res.Mode, j.Name)
		return res, nil
	}
	res.Message = fmt.Sprintf("%s maintenance Job %s failed: %s", res.Mode, j.Name, serverjob.FailureReason(j))
	if len(said) > 0 {
		res.Message += "; " + strings.Join(said, "; ")
	}
	return res, nil
}

// recordJob appends a finished Job's result to the status, remembers a success and its stats in
// the annotations, and marks the Job recorded.
func (r *Reconciler) recordJob(ctx context.Context, br *velerov1.BackupRepository, j *batchv1.Job, failed bool) error {
	res, err := r.jobResult(ctx, j, failed)
	if err != nil {
		return err
	}
	rec := repository.MaintenanceRecord{Mode: repository.MaintenanceQuick, Start: res.Start, End: res.End, Succeeded: res.Succeeded, Message: res.Message}
	if res.Mode == string(repository.MaintenanceFull) {
		rec.Mode = repository.MaintenanceFull
	}
	if err := r.record(ctx, br, rec); err != nil {
		return err
	}
	if err := r.annotate(ctx, br, res); err != nil {
		return err
	}
	if request := j.Annotations[AnnotationRequest]; request != "" {
		a := velerov1.MaintenanceAnswer{Request: request, Mode: j.Labels[LabelMode], Job: j.Name, Start: res.Start, End: res.End,
			Succeeded: res.Succeeded, Message: res.Message}
		if err := r.answer(ctx, br, a); err != nil {
			return err
		}
	}
	return serverjob.MarkRecorded(ctx, r.Client, j, AnnotationRecorded)
}

// newJob makes the Job that runs one maintenance of the repository: the server's own pod
// running `ferry-server maintain`, with the resources and deadline of the node-agent ConfigMap.
// A requested run carries the request it answers.
func (r *Reconciler) newJob(ctx context.Context, br *velerov1.BackupRepository, mode, request string) (*batchv1.Job, error) {
	cfg := r.Config()
	labels := map[string]string{LabelRepository: br.Name, LabelMode: mode,
		"app.kubernetes.io/name": "ferry-maintenance", "app.kubernetes.io/part-of": "ferry"}
	job, err := serverjob.New(ctx, r.Pods, serverjob.Spec{
		Namespace: br.Namespace, Deployment: r.ServerDeployment, Container: JobContainer,
		Args:  []string{"maintain", "--namespace=" + br.Namespace, "--repository=" + br.Name, "--mode=" + mode},
		Owner: br.Name, Kind: "maintain", Labels: labels,
		// One try: a failure is recorded, and the schedule's backoff decides the next.
		Deadline: cfg.MaintenanceJobTimeout, Resources: cfg.MaintenanceJobResources,
	})
	if err != nil {
		return nil, err
	}
	if request != "" {
		metav1.SetMetaDataAnnotation(&job.ObjectMeta, AnnotationRequest, request)
	}
	if err := controllerutil.SetControllerReference(br, job, r.Client.Scheme()); err != nil {
		return nil, err
	}
	return job, nil
}
