package backuprepository

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/repository"
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
}

// Line encodes the result as one line.
func (r JobResult) Line() string {
	// A termination message holds at most 4096 bytes: the message is cut well below.
	if len(r.Message) > 3000 {
		r.Message = strings.ToValidUTF8(r.Message[:3000], "") + "…"
	}
	data, _ := json.Marshal(r)
	return resultMarker + string(data)
}

// ParseJobResult finds the last result line in text; false when there is none.
func ParseJobResult(text string) (JobResult, bool) {
	var found JobResult
	ok := false
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		i := strings.Index(line, resultMarker)
		if i < 0 {
			continue
		}
		var r JobResult
		if json.Unmarshal([]byte(line[i+len(resultMarker):]), &r) == nil {
			found, ok = r, true
		}
	}
	return found, ok
}

// jobs returns the repository's maintenance Jobs, oldest first.
func (r *Reconciler) jobs(ctx context.Context, br *velerov1.BackupRepository) ([]batchv1.Job, error) {
	list := &batchv1.JobList{}
	if err := r.Client.List(ctx, list, client.InNamespace(br.Namespace), client.MatchingLabels{LabelRepository: br.Name}); err != nil {
		return nil, fmt.Errorf("list the maintenance Jobs of %s: %w", br.Name, err)
	}
	slices.SortFunc(list.Items, func(a, b batchv1.Job) int {
		if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return list.Items, nil
}

// jobEnded reports whether the Job has finished, and whether it failed.
func jobEnded(j *batchv1.Job) (ended, failed bool) {
	for _, c := range j.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			continue
		}
		switch c.Type {
		case batchv1.JobComplete:
			return true, false
		case batchv1.JobFailed:
			return true, true
		}
	}
	return false, false
}

// jobResult reads a finished Job's result from its pod's termination message; a pod that said
// nothing (killed for memory, past its deadline, evicted, never started) makes a failed result
// that says what Kubernetes knows.
func (r *Reconciler) jobResult(ctx context.Context, j *batchv1.Job, failed bool) (JobResult, error) {
	res := JobResult{Mode: j.Labels[LabelMode], Start: j.CreationTimestamp.Time, End: r.Clock.Now()}
	if j.Status.StartTime != nil {
		res.Start = j.Status.StartTime.Time
	}
	if j.Status.CompletionTime != nil {
		res.End = j.Status.CompletionTime.Time
	}
	pods := &corev1.PodList{}
	if err := r.Pods.List(ctx, pods, client.InNamespace(j.Namespace), client.MatchingLabels{batchv1.JobNameLabel: j.Name}); err != nil {
		return res, fmt.Errorf("list the pods of maintenance Job %s: %w", j.Name, err)
	}
	var said []string
	for _, p := range pods.Items {
		for _, s := range p.Status.ContainerStatuses {
			t := s.State.Terminated
			if s.Name != JobContainer || t == nil {
				continue
			}
			if reported, ok := ParseJobResult(t.Message); ok {
				return reported, nil
			}
			said = append(said, fmt.Sprintf("pod %s: %s (exit code %d)", p.Name, t.Reason, t.ExitCode))
		}
	}
	if !failed {
		// The command exits 0 only when maintenance succeeded.
		res.Succeeded = true
		res.Message = fmt.Sprintf("%s maintenance Job %s completed; its result message could not be read", res.Mode, j.Name)
		return res, nil
	}
	reason := "it ended without a result"
	for _, c := range j.Status.Conditions {
		if c.Type == batchv1.JobFailed && c.Status == corev1.ConditionTrue {
			reason = fmt.Sprintf("%s: %s", c.Reason, c.Message)
		}
	}
	res.Message = fmt.Sprintf("%s maintenance Job %s failed: %s", res.Mode, j.Name, reason)
	if len(said) > 0 {
		res.Message += "; " + strings.Join(said, "; ")
	}
	return res, nil
}

// record appends a finished Job's result to the status and marks the Job recorded.
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
	patch := client.MergeFrom(j.DeepCopy())
	metav1.SetMetaDataAnnotation(&j.ObjectMeta, AnnotationRecorded, "true")
	return client.IgnoreNotFound(r.Client.Patch(ctx, j, patch))
}

// pruneJobs deletes recorded Jobs beyond the latest keepJobs, with their pods.
func (r *Reconciler) pruneJobs(ctx context.Context, jobs []batchv1.Job) error {
	var recorded []*batchv1.Job
	for i := range jobs {
		if jobs[i].Annotations[AnnotationRecorded] != "" {
			recorded = append(recorded, &jobs[i])
		}
	}
	for len(recorded) > keepJobs {
		if err := r.Client.Delete(ctx, recorded[0], client.PropagationPolicy(metav1.DeletePropagationBackground)); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("delete maintenance Job %s: %w", recorded[0].Name, err)
		}
		recorded = recorded[1:]
	}
	return nil
}

// errNoTemplate says that the server's own Deployment, which maintenance Jobs copy, is missing.
var errNoTemplate = errors.New("no maintenance Job can be made")

// newJob makes the Job that runs one maintenance of the repository. Its pod is the server's
// own (the ferry-server Deployment's image, service account, security context, environment
// and volumes: credentials files, the work directory), running `ferry-server maintain`
// instead of the server, with the resources and deadline of the node-agent ConfigMap.
func (r *Reconciler) newJob(ctx context.Context, br *velerov1.BackupRepository, mode string) (*batchv1.Job, error) {
	dep := &appsv1.Deployment{}
	if err := r.Pods.Get(ctx, client.ObjectKey{Namespace: br.Namespace, Name: r.ServerDeployment}, dep); err != nil {
		return nil, fmt.Errorf("%w: the server's Deployment %s/%s: %v", errNoTemplate, br.Namespace, r.ServerDeployment, err)
	}
	spec := dep.Spec.Template.Spec.DeepCopy()
	if len(spec.Containers) == 0 {
		return nil, fmt.Errorf("%w: the server's Deployment %s/%s has no container", errNoTemplate, br.Namespace, r.ServerDeployment)
	}
	server := spec.Containers[0]
	args := []string{"maintain", "--namespace=" + br.Namespace, "--repository=" + br.Name, "--mode=" + mode}
	for _, a := range server.Args {
		if strings.HasPrefix(a, "--work-dir=") {
			args = append(args, a)
		}
	}
	c := corev1.Container{
		Name: JobContainer, Image: server.Image, ImagePullPolicy: server.ImagePullPolicy, Command: server.Command, Args: args,
		Env: server.Env, EnvFrom: server.EnvFrom, VolumeMounts: server.VolumeMounts, SecurityContext: server.SecurityContext,
		Resources: server.Resources,
		// The result is written there; if that fails, the log's last line says it.
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
	cfg := r.Config()
	if cfg.MaintenanceJobResources != nil {
		c.Resources = *cfg.MaintenanceJobResources
	}
	spec.Containers = []corev1.Container{c}
	spec.InitContainers = nil
	spec.RestartPolicy = corev1.RestartPolicyNever
	labels := map[string]string{LabelRepository: br.Name, LabelMode: mode,
		"app.kubernetes.io/name": "ferry-maintenance", "app.kubernetes.io/part-of": "ferry"}
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Namespace: br.Namespace, GenerateName: jobPrefix(br.Name), Labels: labels},
		Spec: batchv1.JobSpec{
			// One try: a failure is recorded, and the schedule's backoff decides the next.
			BackoffLimit:          ptr.To[int32](0),
			ActiveDeadlineSeconds: ptr.To(int64(cfg.MaintenanceJobTimeout / time.Second)),
			Template:              corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: *spec},
		},
	}
	if err := controllerutil.SetControllerReference(br, job, r.Client.Scheme()); err != nil {
		return nil, err
	}
	return job, nil
}

// jobPrefix is the Jobs' generateName, <repository>-maintain-, the repository's name cut so that
// the whole name (5 random characters follow) fits a label value: the Job's pods carry it.
func jobPrefix(repo string) string {
	const suffix, random = "-maintain-", 5
	if len(repo)+len(suffix)+random > 63 {
		repo = strings.TrimRight(repo[:63-len(suffix)-random], "-.")
	}
	return repo + suffix
}
