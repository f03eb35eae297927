// Package serverjob provides the Jobs ferry-server runs its long work in (repository
// maintenance, backup verification): one pod copied from the server's own Deployment, running a
// `ferry-server <command>`, which reports its result as one marked line in its container's
// termination message (and as the last line of its log, which the termination message falls
// back to). It builds such Jobs, reads their results and prunes the old ones.
package serverjob

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
)

// MessageLimit is the most a termination message holds (Kubernetes cuts it at 4096 bytes); a
// result line should stay below it.
const MessageLimit = 4096

// Line encodes v as one line that starts with marker.
func Line(marker string, v any) string {
	data, _ := json.Marshal(v)
	return marker + string(data)
}

// Parse decodes into v the last line of text that starts (after any prefix) with marker; false
// when there is none.
func Parse(text, marker string, v any) bool {
	var last string
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.Index(line, marker); i >= 0 && json.Valid([]byte(line[i+len(marker):])) {
			last = line[i+len(marker):]
		}
	}
	return last != "" && json.Unmarshal([]byte(last), v) == nil
}

// List returns the Jobs in namespace with the labels, oldest first.
func List(ctx context.Context, c client.Reader, namespace string, labels client.MatchingLabels) ([]batchv1.Job, error) {
	list := &batchv1.JobList{}
	if err := c.List(ctx, list, client.InNamespace(namespace), labels); err != nil {
		return nil, err
	}
	slices.SortFunc(list.Items, func(a, b batchv1.Job) int {
		if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return list.Items, nil
}

// Ended reports whether the Job has finished, and whether it failed.
func Ended(j *batchv1.Job) (ended, failed bool) {
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

// Times returns when the Job started and ended, falling back to its creation and now.
func Times(j *batchv1.Job, now time.Time) (start, end time.Time) {
	start, end = j.CreationTimestamp.Time, now
	if j.Status.StartTime != nil {
		start = j.Status.StartTime.Time
	}
	if j.Status.CompletionTime != nil {
		end = j.Status.CompletionTime.Time
	}
	return start, end
}

// Report reads a finished Job's result: the first termination message of its container that
// parse accepts. Otherwise said describes how each pod's container ended ("pod x: OOMKilled
// (exit code 137)"), and FailureReason what the Job controller says.
func Report(ctx context.Context, pods client.Reader, j *batchv1.Job, container string, parse func(message string) bool) (found bool, said []string, err error) {
	list := &corev1.PodList{}
	if err := pods.List(ctx, list, client.InNamespace(j.Namespace), client.MatchingLabels{batchv1.JobNameLabel: j.Name}); err != nil {
		return false, nil, fmt.Errorf("list the pods of Job %s: %w", j.Name, err)
	}
	for _, p := range list.Items {
		for _, s := range p.Status.ContainerStatuses {
			t := s.State.Terminated
			if s.Name != container || t == nil {
				continue
			}
			if parse(t.Message) {
				return true, nil, nil
			}
			said = append(said, fmt.Sprintf("pod %s: %s (exit code %d)", p.Name, t.Reason, t.ExitCode))
		}
	}
	return false, said, nil
}

// FailureReason is the reason and message of the Job's Failed condition.
func FailureReason(j *batchv1.Job) string {
	for _, c := range j.Status.Conditions {
		if c.Type == batchv1.JobFailed && c.Status == corev1.ConditionTrue {
			return fmt.Sprintf("%s: %s", c.Reason, c.Message)
		}
	}
	return "it ended without a result"
}

// Prune deletes the Jobs carrying the annotation recorded beyond the latest keep, with their
// pods. jobs are oldest first (List).
func Prune(ctx context.Context, c client.Client, jobs []batchv1.Job, recorded string, keep int) error {
	var done []*batchv1.Job
	for i := range jobs {
		if jobs[i].Annotations[recorded] != "" {
			done = append(done, &jobs[i])
		}
	}
	for len(done) > keep {
		if err := c.Delete(ctx, done[0], client.PropagationPolicy(metav1.DeletePropagationBackground)); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("delete Job %s: %w", done[0].Name, err)
		}
		done = done[1:]
	}
	return nil
}

// MarkRecorded sets the annotation recorded on the Job: its result is kept elsewhere.
func MarkRecorded(ctx context.Context, c client.Client, j *batchv1.Job, recorded string) error {
	patch := client.MergeFrom(j.DeepCopy())
	metav1.SetMetaDataAnnotation(&j.ObjectMeta, recorded, "true")
	return client.IgnoreNotFound(c.Patch(ctx, j, patch))
}

// ErrNoTemplate says that the server's own Deployment, which the Jobs copy, is missing.
var ErrNoTemplate = errors.New("no Job can be made")

// Spec describes one Job.
type Spec struct {
	// Namespace is the install namespace, where the server's Deployment is.
	Namespace string
	// Deployment names the server's Deployment, whose pod the Job copies.
	Deployment string
	// Container names the Job's one container; Args are its arguments to ferry-server (the
	// server's --work-dir is added).
	Container string
	Args      []string
	// Owner and Kind make the Job's name, <owner>-<kind>-<5 random characters> (GenerateName).
	Owner, Kind string
	Labels      map[string]string
	// Deadline is the Job's activeDeadlineSeconds.
	Deadline time.Duration
	// Resources replace the server's, when set.
	Resources *corev1.ResourceRequirements
}

// New makes a Job whose pod is the server's own (the Deployment's image, service account,
// security context, environment and volumes: credentials files, the work directory), running
// `ferry-server <args>` instead of the server. It tries once: a failure is the caller's to
// record and retry. ErrNoTemplate when the Deployment cannot be read.
func New(ctx context.Context, c client.Reader, s Spec) (*batchv1.Job, error) {
	dep := &appsv1.Deployment{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: s.Namespace, Name: s.Deployment}, dep); err != nil {
		return nil, fmt.Errorf("%w: the server's Deployment %s/%s: %v", ErrNoTemplate, s.Namespace, s.Deployment, err)
	}
	spec := dep.Spec.Template.Spec.DeepCopy()
	if len(spec.Containers) == 0 {
		return nil, fmt.Errorf("%w: the server's Deployment %s/%s has no container", ErrNoTemplate, s.Namespace, s.Deployment)
	}
	server := spec.Containers[0]
	args := slices.Clone(s.Args)
	for _, a := range server.Args {
		if strings.HasPrefix(a, "--work-dir=") {
			args = append(args, a)
		}
	}
	ctr := corev1.Container{
		Name: s.Container, Image: server.Image, ImagePullPolicy: server.ImagePullPolicy, Command: server.Command, Args: args,
		Env: server.Env, EnvFrom: server.EnvFrom, VolumeMounts: server.VolumeMounts, SecurityContext: server.SecurityContext,
		Resources: server.Resources,
		// The result is written there; if that fails, the log's last line says it.
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
	if s.Resources != nil {
		ctr.Resources = *s.Resources
	}
	spec.Containers = []corev1.Container{ctr}
	spec.InitContainers = nil
	spec.RestartPolicy = corev1.RestartPolicyNever
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Namespace: s.Namespace, GenerateName: GenerateName(s.Owner, s.Kind), Labels: s.Labels},
		Spec: batchv1.JobSpec{
			BackoffLimit: ptr.To[int32](0),
			Template:     corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: s.Labels}, Spec: *spec},
		},
	}
	if s.Deadline > 0 {
		job.Spec.ActiveDeadlineSeconds = ptr.To(int64(s.Deadline / time.Second))
	}
	return job, nil
}

// GenerateName is a Job's generateName, <owner>-<kind>-, the owner's name cut so that the whole
// name (5 random characters follow) fits a label value: the Job's pods carry it.
func GenerateName(owner, kind string) string {
	suffix := "-" + kind + "-"
	const random = 5
	if len(owner)+len(suffix)+random > 63 {
		owner = strings.TrimRight(owner[:63-len(suffix)-random], "-.")
	}
	return owner + suffix
}
