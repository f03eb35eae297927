package exposer

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Paths in the mover pod.
const (
	VolumePath   = "/data"
	moverWorkDir = "/var/cache/ferry"
)

// moverCapabilities are what the mover keeps of root's powers, as the node-agent's (see `ferry
// install`): reading every file whatever its mode, and for restores setting owners, modes and times.
var (
	uploadCapabilities   = []corev1.Capability{"DAC_OVERRIDE"}
	downloadCapabilities = []corev1.Capability{"DAC_OVERRIDE", "CHOWN", "FOWNER", "FSETID"}
)

// MaxRestarts is how often a mover container may crash (killed, out of memory, a bug) before the
// operation fails; each restart resumes: an upload from its last checkpoint.
const MaxRestarts = 3

// unschedulableGrace is how long a mover pod may stay unschedulable, which it is for a moment
// while its volume is provisioned, before the operation fails with the scheduler's reason.
const unschedulableGrace = time.Minute

// staleGrace is how long a mover pod may stay unschedulable for a claim "not found" or unbound
// once its claim is bound. The scheduler (v1.34, as seen on the e2e tier's cluster) can
// park a pod on that reason while the claim is being bound and not look at it again for five
// minutes; a new pod is scheduled at once.
const staleGrace = 15 * time.Second

// staleReason is what the scheduler says of a pod whose claim it has not seen bound.
const staleReason = "unbound immediate PersistentVolumeClaims"

func objectMeta(namespace, name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: namespace, Name: name}
}

// checkMover refuses to expose anything when no mover image is configured.
func (e *Exposer) checkMover() error {
	if e.Mover.Image == "" {
		return permanent("the node-agent has no data mover image (--mover-image or $FERRY_IMAGE)")
	}
	return nil
}

// moverPod is op's mover: ferry-datamover with the operation's volume at VolumePath (read-only
// for an upload), as root with only the capabilities it needs, a read-only root file system and a
// bounded emptyDir for Kopia's caches. A crashed container is restarted in place and resumes.
func (e *Exposer) moverPod(op Operation) *corev1.Pod {
	kindFlag, caps := "--data-download=", downloadCapabilities
	if op.Upload {
		kindFlag, caps = "--data-upload=", uploadCapabilities
	}
	args := []string{"--namespace=" + e.Namespace, kindFlag + op.name(), "--volume-path=" + VolumePath, "--work-dir=" + moverWorkDir}
	if op.Parallel > 0 {
		args = append(args, "--parallel="+strconv.Itoa(op.Parallel))
	}
	resources := e.Mover.Resources
	if op.Resources != nil {
		resources = *op.Resources
	}
	root, yes, no := int64(0), true, false
	meta := e.ownedMeta(op)
	meta.Labels["app.kubernetes.io/name"] = MoverComponent
	pod := &corev1.Pod{ObjectMeta: meta, Spec: corev1.PodSpec{
		ServiceAccountName: e.Mover.ServiceAccount,
		RestartPolicy:      corev1.RestartPolicyOnFailure,
		SecurityContext:    &corev1.PodSecurityContext{SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
		Containers: []corev1.Container{{
			Name: MoverContainer, Image: e.Mover.Image, ImagePullPolicy: e.Mover.PullPolicy,
			Command: []string{"/ferry-datamover"},
			Args:    args,
			Env: []corev1.EnvVar{{Name: "TMPDIR", Value: moverWorkDir},
				{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
				{Name: "NODE_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}}},
			Resources:                resources,
			TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
			SecurityContext: &corev1.SecurityContext{RunAsUser: &root, RunAsGroup: &root, AllowPrivilegeEscalation: &no,
				ReadOnlyRootFilesystem: &yes, Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: caps}},
			VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: VolumePath, ReadOnly: op.Upload}, {Name: "work", MountPath: moverWorkDir}},
		}},
		Volumes: []corev1.Volume{
			{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: op.name(), ReadOnly: op.Upload}}},
			{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: e.Mover.WorkDirSizeLimit}}},
		},
	}}
	e.Mover.Credentials.AddTo(&pod.Spec)
	return pod
}

// MoverState is what the mover pod of an operation shows.
type MoverState struct {
	// Exists is false when there is no pod (not made yet, or deleted); Deleting while one is
	// being deleted.
	Exists, Deleting bool
	// Running is true once the mover runs; Node is where.
	Running bool
	Node    string
	// Result is the mover's outcome once it ended.
	Result *Result
	// Problem is why the operation must fail now: the pod cannot start or keeps crashing.
	Problem string
	// Stale says the pod is unschedulable for a reason that is gone (its claim is bound since):
	// delete it, and a new one is made (staleGrace).
	Stale bool
}

// Inspect reads the state of op's mover pod.
func (e *Exposer) Inspect(ctx context.Context, op Operation, now time.Time) (MoverState, error) {
	pod := &corev1.Pod{}
	err := e.Client.Get(ctx, client.ObjectKey{Namespace: e.Namespace, Name: op.name()}, pod)
	if apierrors.IsNotFound(err) {
		return MoverState{}, nil
	}
	if err != nil {
		return MoverState{}, fmt.Errorf("read mover pod %s/%s: %w", e.Namespace, op.name(), err)
	}
	if pod.DeletionTimestamp != nil {
		return MoverState{Deleting: true}, nil
	}
	st := MoverState{Exists: true, Node: pod.Spec.NodeName}
	var c *corev1.ContainerStatus
	for i := range pod.Status.ContainerStatuses {
		if pod.Status.ContainerStatuses[i].Name == MoverContainer {
			c = &pod.Status.ContainerStatuses[i]
		}
	}
	switch pod.Status.Phase {
	case corev1.PodSucceeded:
		if c == nil || c.State.Terminated == nil {
			st.Problem = "mover pod succeeded without a container status"
			return st, nil
		}
		res, err := DecodeResult(strings.TrimSpace(c.State.Terminated.Message))
		if err != nil {
			st.Problem = err.Error()
			return st, nil
		}
		st.Result = &res
		return st, nil
	case corev1.PodFailed:
		st.Problem = fmt.Sprintf("mover pod %s failed: %s %s", pod.Name, pod.Status.Reason, pod.Status.Message)
		return st, nil
	case corev1.PodRunning:
		st.Running = true
	}
	if c != nil {
		for _, t := range []*corev1.ContainerStateTerminated{c.State.Terminated, c.LastTerminationState.Terminated} {
			if t != nil && (t.Reason == "OOMKilled" || strings.Contains(t.Message, "OOM-killed")) {
				st.Problem = fmt.Sprintf("mover container of pod %s was killed for lack of memory (OOMKilled; its memory limit is %s)",
					pod.Name, limitOf(pod))
				return st, nil
			}
		}
		if c.RestartCount >= MaxRestarts {
			st.Problem = fmt.Sprintf("mover container of pod %s crashed %d times%s", pod.Name, c.RestartCount, lastExit(c))
			return st, nil
		}
		if w := c.State.Waiting; w != nil {
			switch w.Reason {
			case "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError", "CreateContainerError", "ErrImageNeverPull":
				st.Problem = fmt.Sprintf("mover pod %s cannot start: %s: %s", pod.Name, w.Reason, w.Message)
				return st, nil
			}
		}
	}
	for _, cond := range pod.Status.Conditions {
		if cond.Type != corev1.PodScheduled || cond.Status != corev1.ConditionFalse || cond.Reason != corev1.PodReasonUnschedulable {
			continue
		}
		unschedulable := now.Sub(cond.LastTransitionTime.Time)
		switch {
		case unschedulable > staleGrace && strings.Contains(cond.Message, staleReason) && e.claimBound(ctx, op):
			st.Stale = true
		case unschedulable > unschedulableGrace:
			st.Problem = fmt.Sprintf("mover pod %s cannot be scheduled: %s%s", pod.Name, cond.Message, e.unbound(ctx, op))
		}
	}
	return st, nil
}

// claimBound reports whether the operation's claim is bound.
func (e *Exposer) claimBound(ctx context.Context, op Operation) bool {
	pvc := &corev1.PersistentVolumeClaim{}
	err := e.Client.Get(ctx, client.ObjectKey{Namespace: e.Namespace, Name: op.name()}, pvc)
	return err == nil && pvc.Status.Phase == corev1.ClaimBound
}

// unbound says why the operation's claim is not bound, if it is not: the usual reason a mover pod
// cannot be scheduled for long.
func (e *Exposer) unbound(ctx context.Context, op Operation) string {
	pvc := &corev1.PersistentVolumeClaim{}
	if err := e.Client.Get(ctx, client.ObjectKey{Namespace: e.Namespace, Name: op.name()}, pvc); err != nil || pvc.Status.Phase == corev1.ClaimBound {
		return ""
	}
	class := "<none>"
	if pvc.Spec.StorageClassName != nil {
		class = *pvc.Spec.StorageClassName
	}
	return fmt.Sprintf("; its claim %s/%s is %s (storage class %s): is that class's provisioner running?", pvc.Namespace, pvc.Name, pvc.Status.Phase, class)
}

func limitOf(pod *corev1.Pod) string {
	if q, ok := pod.Spec.Containers[0].Resources.Limits[corev1.ResourceMemory]; ok {
		return q.String()
	}
	return "none"
}

func lastExit(c *corev1.ContainerStatus) string {
	if t := c.LastTerminationState.Terminated; t != nil {
		return fmt.Sprintf("; last: exit code %d, %s %s", t.ExitCode, t.Reason, strings.TrimSpace(t.Message))
	}
	return ""
}

// RecreateMover makes op's mover pod again after it was deleted while it ran.
func (e *Exposer) RecreateMover(ctx context.Context, op Operation) error {
	return e.create(ctx, e.moverPod(op))
}

// StopMover deletes op's mover pod: its process gets SIGTERM, and an upload saves a checkpoint.
func (e *Exposer) StopMover(ctx context.Context, op Operation) error {
	_, err := e.remove(ctx, &corev1.Pod{ObjectMeta: objectMeta(e.Namespace, op.name())})
	return err
}
