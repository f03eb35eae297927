// Package podvolume provides the directory of a pod's volume on this node: it reads the pod, the
// volume's claim and PersistentVolume from the API server, and resolves them under the kubelet's
// pods directory.
package podvolume

import (
	"context"
	"errors"
	"fmt"
	"os"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferry-backup/ferry/internal/hostpath"
)

// ErrPodGone means the pod no longer exists, or is another pod of the same name.
var ErrPodGone = errors.New("pod not found")

// Volume is a pod volume found on this node.
type Volume struct {
	// Dir is the volume's directory as this process sees it.
	Dir string
	// Pod is the pod that mounts the volume.
	Pod *corev1.Pod
	// ClaimName is the PVC behind the volume, if any.
	ClaimName string
	// Source identifies the volume's data across pods and nodes, for finding the previous
	// snapshot: /<namespace>/pvc/<claim> or /<namespace>/pod/<pod>/<volume>.
	Source string
}

// Locator finds pod volumes of one node.
type Locator struct {
	Client client.Reader
	// Node is this node's name; volumes of pods on other nodes are refused.
	Node string
	// Root is the kubelet pods directory as mounted here (/host_pods).
	Root string
}

// Find returns the directory of volume volumeName of the pod ref (namespace, name, and uid when
// set) on this node.
func (l Locator) Find(ctx context.Context, ref corev1.ObjectReference, volumeName string) (Volume, error) {
	pod := &corev1.Pod{}
	if err := l.Client.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, pod); err != nil {
		if apierrors.IsNotFound(err) {
			return Volume{}, fmt.Errorf("pod %s/%s: %w", ref.Namespace, ref.Name, ErrPodGone)
		}
		return Volume{}, fmt.Errorf("read pod %s/%s: %w", ref.Namespace, ref.Name, err)
	}
	if ref.UID != "" && ref.UID != pod.UID {
		return Volume{}, fmt.Errorf("pod %s/%s has UID %s, not %s: %w", ref.Namespace, ref.Name, pod.UID, ref.UID, ErrPodGone)
	}
	if pod.DeletionTimestamp != nil {
		return Volume{}, fmt.Errorf("pod %s/%s is being deleted", pod.Namespace, pod.Name)
	}
	if pod.Spec.NodeName != l.Node {
		return Volume{}, fmt.Errorf("pod %s/%s runs on node %q, not on this node %q", pod.Namespace, pod.Name, pod.Spec.NodeName, l.Node)
	}
	var spec *corev1.Volume
	for i := range pod.Spec.Volumes {
		if pod.Spec.Volumes[i].Name == volumeName {
			spec = &pod.Spec.Volumes[i]
		}
	}
	if spec == nil {
		return Volume{}, fmt.Errorf("pod %s/%s has no volume %q", pod.Namespace, pod.Name, volumeName)
	}
	v := Volume{Pod: pod, Source: fmt.Sprintf("/%s/pod/%s/%s", pod.Namespace, pod.Name, volumeName)}
	hv := hostpath.Volume{PodUID: string(pod.UID), Source: *spec}
	if claim := claimOf(pod, spec); claim != "" {
		pv, err := l.boundPV(ctx, pod.Namespace, claim)
		if err != nil {
			return Volume{}, err
		}
		hv.PV, v.ClaimName, v.Source = pv, claim, fmt.Sprintf("/%s/pvc/%s", pod.Namespace, claim)
	}
	rel, err := hostpath.Resolve(os.DirFS(l.Root), hv)
	if err != nil {
		return Volume{}, fmt.Errorf("pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	if v.Dir, err = hostpath.Under(l.Root, rel); err != nil {
		return Volume{}, fmt.Errorf("pod %s/%s volume %s: %w", pod.Namespace, pod.Name, volumeName, err)
	}
	return v, nil
}

// claimOf returns the PVC of a volume: named in the spec, or <pod>-<volume> for an ephemeral one.
func claimOf(pod *corev1.Pod, v *corev1.Volume) string {
	switch {
	case v.PersistentVolumeClaim != nil:
		return v.PersistentVolumeClaim.ClaimName
	case v.Ephemeral != nil:
		return pod.Name + "-" + v.Name
	}
	return ""
}

func (l Locator) boundPV(ctx context.Context, namespace, claim string) (*corev1.PersistentVolume, error) {
	pvc := &corev1.PersistentVolumeClaim{}
	if err := l.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: claim}, pvc); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("persistent volume claim %s/%s not found", namespace, claim)
		}
		return nil, fmt.Errorf("read persistent volume claim %s/%s: %w", namespace, claim, err)
	}
	if pvc.Spec.VolumeName == "" {
		return nil, fmt.Errorf("persistent volume claim %s/%s is not bound", namespace, claim)
	}
	pv := &corev1.PersistentVolume{}
	if err := l.Client.Get(ctx, client.ObjectKey{Name: pvc.Spec.VolumeName}, pv); err != nil {
		return nil, fmt.Errorf("read persistent volume %s of claim %s/%s: %w", pvc.Spec.VolumeName, namespace, claim, err)
	}
	return pv, nil
}
