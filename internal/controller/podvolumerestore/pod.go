package podvolumerestore

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/operation"
)

// restoreWait is the init container Velero adds to a restored pod: it waits for the restore
// markers, and while it runs the pod's volumes are mounted and nothing else uses them.
const restoreWait = "restore-wait"

// podIndex indexes PodVolumeRestores by their target pod, <namespace>/<name>.
const podIndex = "spec.pod"

func podKey(namespace, name string) string { return namespace + "/" + name }

// target returns the node of the restore's pod and, while a new restore must wait for its pod,
// why it waits. Velero creates a PodVolumeRestore right after the pod, often before the pod is
// scheduled; its volume can be written only once it is mounted. A restore that was accepted
// before (resumed after a restart, or ended) does not wait again.
func (r *Reconciler) target(ctx context.Context, pvr *velerov1.PodVolumeRestore) (node, waitFor string, err error) {
	node = pvr.Spec.Node
	isNew := pvr.Status.Phase == "" || pvr.Status.Phase == velerov1.PodVolumePhaseNew
	if pvr.Status.Phase.Terminal() || (node != "" && node != r.Node) {
		return node, "", nil
	}
	if node == "" && !isNew && pvr.Status.Node != "" {
		return pvr.Status.Node, "", nil // accepted: the accepting agent wrote its node, no need to read the pod
	}
	ref := pvr.Spec.Pod
	pod := &corev1.Pod{}
	err = r.Volumes.Client.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, pod)
	switch {
	case apierrors.IsNotFound(err):
		return node, fmt.Sprintf("pod %s/%s does not exist", ref.Namespace, ref.Name), nil
	case err != nil:
		return "", "", fmt.Errorf("read pod %s/%s: %w", ref.Namespace, ref.Name, err)
	case ref.UID != "" && ref.UID != pod.UID:
		return node, fmt.Sprintf("pod %s/%s is another pod (UID %s, not %s)", ref.Namespace, ref.Name, pod.UID, ref.UID), nil
	}
	if node == "" {
		node = pod.Spec.NodeName // Velero leaves spec.node empty: the pod's node takes the restore
	}
	switch {
	case !isNew || node != "" && node != r.Node:
		return node, "", nil
	case pod.Spec.NodeName == "":
		return node, fmt.Sprintf("pod %s/%s is not scheduled yet", ref.Namespace, ref.Name), nil
	}
	return node, notMounted(pod), nil
}

// notMounted says why the pod's volumes cannot be written yet, or "" when they can: Velero's
// restore-wait init container has started, or (a pod without it, Ferry's own restores) the pod
// runs or is ready to start its containers, which the kubelet allows only once volumes are
// mounted.
func notMounted(pod *corev1.Pod) string {
	for _, c := range pod.Spec.InitContainers {
		if c.Name != restoreWait {
			continue
		}
		for _, s := range pod.Status.InitContainerStatuses {
			if s.Name == restoreWait && (s.State.Running != nil || s.State.Terminated != nil) {
				return ""
			}
		}
		return fmt.Sprintf("init container %s of pod %s/%s is not running yet", restoreWait, pod.Namespace, pod.Name)
	}
	if pod.Status.Phase == corev1.PodRunning {
		return ""
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReadyToStartContainers && c.Status == corev1.ConditionTrue {
			return ""
		}
	}
	return fmt.Sprintf("pod %s/%s is %s and its volumes are not mounted yet", pod.Namespace, pod.Name, pod.Status.Phase)
}

// wait leaves a new restore New until its pod changes (the pod watch wakes it) or its timeout,
// counted from its creation, ends; then it fails, saying what it waited for. One whose timeout is
// not a duration fails at once. A restore whose pod is on no node yet may be failed by every
// agent: they write the same outcome.
func (r *Reconciler) wait(ctx context.Context, pvr *velerov1.PodVolumeRestore, node, waitFor string) (ctrl.Result, error) {
	if node != "" && node != r.Node {
		return ctrl.Result{}, nil
	}
	if err := operation.TimeoutErr(pvr.Spec.OperationTimeout); err != nil {
		return ctrl.Result{}, r.reporter().Finish(ctx, pvr, velerov1.PodVolumePhaseFailed, err.Error(), nil, nil)
	}
	timeout := operation.Timeout(pvr.Spec.OperationTimeout)
	left := pvr.CreationTimestamp.Add(timeout).Sub(r.Clock.Now())
	if left > 0 {
		return ctrl.Result{RequeueAfter: left}, nil
	}
	msg := fmt.Sprintf("timed out after %s waiting for the target pod: %s", timeout, waitFor)
	return ctrl.Result{}, r.reporter().Finish(ctx, pvr, velerov1.PodVolumePhaseFailed, msg, nil, nil)
}

// restoresOf maps a pod of this node to the PodVolumeRestores that target it.
func (r *Reconciler) restoresOf(ctx context.Context, pod client.Object) []reconcile.Request {
	list := &velerov1.PodVolumeRestoreList{}
	if err := r.Client.List(ctx, list, client.MatchingFields{podIndex: podKey(pod.GetNamespace(), pod.GetName())}); err != nil {
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for _, pvr := range list.Items {
		if !pvr.Status.Phase.Terminal() {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&pvr)})
		}
	}
	return reqs
}

// podOf is the index function of podIndex.
func podOf(o client.Object) []string {
	pvr, ok := o.(*velerov1.PodVolumeRestore)
	if !ok {
		return nil
	}
	return []string{podKey(pvr.Spec.Pod.Namespace, pvr.Spec.Pod.Name)}
}
