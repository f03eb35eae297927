package backupverification

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/serverjob"
)

// Labels and annotations of verification Jobs.
const (
	// LabelBackupUID is the UID of the Backup a verification Job verifies.
	LabelBackupUID = "ferry.io/verify-backup-uid"
	// AnnotationRequest is the request a Job answers; AnnotationLocation the backup's location.
	AnnotationRequest  = "ferry.io/verify-request"
	AnnotationLocation = "ferry.io/verify-location"
	// AnnotationRecorded marks a finished Job whose result is recorded.
	AnnotationRecorded = "ferry.io/verification-recorded"
	// JobContainer is the name of the verification Job's container.
	JobContainer = "verify"
	// keepJobs is how many finished Jobs of a backup are kept to look at.
	keepJobs = 3
)

// recordJobs records the results of the backup's finished, unrecorded Jobs, prunes old ones and
// reports whether one still runs (its end wakes the controller; its deadline bounds it).
func (r *Reconciler) recordJobs(ctx context.Context, b *velerov1.Backup) (running bool, err error) {
	jobs, err := serverjob.List(ctx, r.Client, b.Namespace, client.MatchingLabels{LabelBackupUID: string(b.UID)})
	if err != nil {
		return false, fmt.Errorf("list the verification Jobs of backup %s: %w", b.Name, err)
	}
	for i := range jobs {
		j := &jobs[i]
		ended, failed := serverjob.Ended(j)
		switch {
		case !ended:
			running = true
		case j.Annotations[AnnotationRecorded] == "":
			res, err := r.jobResult(ctx, b, j, failed)
			if err != nil {
				return false, err
			}
			if err := r.record(ctx, b, j.Annotations[AnnotationLocation], res); err != nil {
				return false, err
			}
			if err := serverjob.MarkRecorded(ctx, r.Client, j, AnnotationRecorded); err != nil {
				return false, err
			}
		}
	}
	return running, serverjob.Prune(ctx, r.Client, jobs, AnnotationRecorded, keepJobs)
}

// jobResult reads a finished Job's result from its pod's termination message; a pod that said
// nothing (killed for memory, past its deadline) makes an incomplete result that says what
// Kubernetes knows.
func (r *Reconciler) jobResult(ctx context.Context, b *velerov1.Backup, j *batchv1.Job, failed bool) (velerov1.BackupVerification, error) {
	var reported velerov1.BackupVerification
	found, said, err := serverjob.Report(ctx, r.Pods, j, JobContainer, func(msg string) bool {
		var ok bool
		reported, ok = ParseResult(msg)
		return ok
	})
	if err != nil {
		return reported, err
	}
	if found {
		reported.Job = j.Name
		return reported, nil
	}
	res := velerov1.BackupVerification{Request: j.Annotations[AnnotationRequest], Backup: b.Name, Job: j.Name}
	res.Start, res.End = serverjob.Times(j, r.Clock.Now())
	if req, err := ParseRequest(res.Request); err == nil {
		res.Percent = req.Percent
	}
	if !failed {
		// The command exits 0 only when it verified every volume and found no damage.
		res.Completed = true
		res.Message = fmt.Sprintf("verification Job %s completed; its result message could not be read", j.Name)
		return res, nil
	}
	res.Message = fmt.Sprintf("verification Job %s failed: %s", j.Name, serverjob.FailureReason(j))
	if len(said) > 0 {
		res.Message += "; " + strings.Join(said, "; ")
	}
	return res, nil
}

// newJob makes the Job that verifies the backup: the server's own pod running
// `ferry-server verify`, owned by the Backup (deleted with it).
func (r *Reconciler) newJob(ctx context.Context, b *velerov1.Backup, location string, req Request, value string) (*batchv1.Job, error) {
	cfg := r.Config()
	labels := map[string]string{LabelBackupUID: string(b.UID),
		"app.kubernetes.io/name": "ferry-verification", "app.kubernetes.io/part-of": "ferry"}
	job, err := serverjob.New(ctx, r.Pods, serverjob.Spec{
		Namespace: b.Namespace, Deployment: r.ServerDeployment, Container: JobContainer,
		Args: []string{"verify", "--namespace=" + b.Namespace, "--backup=" + b.Name, "--location=" + location,
			"--percent=" + strconv.FormatFloat(req.Percent, 'f', -1, 64), "--request=" + value},
		Owner: b.Name, Kind: "verify", Labels: labels,
		Deadline: cfg.MaintenanceJobTimeout, Resources: cfg.MaintenanceJobResources,
	})
	if err != nil {
		return nil, err
	}
	job.Annotations = map[string]string{AnnotationRequest: value, AnnotationLocation: location}
	if err := controllerutil.SetControllerReference(b, job, r.Client.Scheme()); err != nil {
		return nil, err
	}
	return job, nil
}
