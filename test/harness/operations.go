package harness

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
)

// BackupVolume creates a PodVolumeBackup of one volume of pod, targeted at the pod's node.
func (c *Cluster) BackupVolume(pod *Pod, volume, name string, mutate ...func(*velerov1.PodVolumeBackup)) *velerov1.PodVolumeBackup {
	c.t.Helper()
	pvb := &velerov1.PodVolumeBackup{
		ObjectMeta: metav1.ObjectMeta{Namespace: c.Install, Name: name},
		Spec: velerov1.PodVolumeBackupSpec{
			Node: pod.Spec.NodeName, Volume: volume, BackupStorageLocation: "default",
			Pod: corev1.ObjectReference{Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID},
		},
	}
	for _, m := range mutate {
		m(pvb)
	}
	if err := c.Client.Create(context.Background(), pvb); err != nil {
		c.t.Fatalf("harness: create PodVolumeBackup %s: %v", name, err)
	}
	return pvb
}

// RestoreVolume creates a PodVolumeRestore of snapshotID into one volume of pod.
func (c *Cluster) RestoreVolume(pod *Pod, volume, snapshotID, name string, mutate ...func(*velerov1.PodVolumeRestore)) *velerov1.PodVolumeRestore {
	c.t.Helper()
	pvr := &velerov1.PodVolumeRestore{
		ObjectMeta: metav1.ObjectMeta{Namespace: c.Install, Name: name},
		Spec: velerov1.PodVolumeRestoreSpec{
			Node: pod.Spec.NodeName, Volume: volume, BackupStorageLocation: "default", SnapshotID: snapshotID,
			SourceNamespace: pod.Namespace,
			Pod:             corev1.ObjectReference{Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID},
		},
	}
	for _, m := range mutate {
		m(pvr)
	}
	if err := c.Client.Create(context.Background(), pvr); err != nil {
		c.t.Fatalf("harness: create PodVolumeRestore %s: %v", name, err)
	}
	return pvr
}

// WaitPhase waits until the operation reaches phase, failing early if it reaches another
// terminal phase. obj is refreshed.
func (c *Cluster) WaitPhase(obj client.Object, phase velerov1.PodVolumePhase, timeout time.Duration) {
	c.t.Helper()
	c.Eventually(timeout, func() (bool, string) {
		if err := c.Client.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
			return false, err.Error()
		}
		have, msg := phaseOf(obj)
		if have != phase && have.Terminal() {
			c.t.Fatalf("%s ended %s (%s), want %s", obj.GetName(), have, msg, phase)
		}
		return have == phase, fmt.Sprintf("%s is %q (%s), want %s", obj.GetName(), have, msg, phase)
	})
}

func phaseOf(obj client.Object) (velerov1.PodVolumePhase, string) {
	switch o := obj.(type) {
	case *velerov1.PodVolumeBackup:
		return o.Status.Phase, o.Status.Message
	case *velerov1.PodVolumeRestore:
		return o.Status.Phase, o.Status.Message
	}
	return "", "unknown kind"
}

// Patch applies a merge patch to obj's spec fields (e.g. {"cancel": true}).
func (c *Cluster) PatchSpec(obj client.Object, spec map[string]any) {
	c.t.Helper()
	if err := c.Client.Patch(context.Background(), obj, client.RawPatch("application/merge-patch+json", mustJSON(map[string]any{"spec": spec}))); err != nil {
		c.t.Fatalf("harness: patch %s: %v", obj.GetName(), err)
	}
}

// SetNodeAgentConfig creates or replaces the node-agent ConfigMap's data.
func (c *Cluster) SetNodeAgentConfig(data map[string]string) {
	c.t.Helper()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: c.Install, Name: "node-agent"}}
	c.apply(cm, func() { cm.Data = data })
}

// WaitProgress waits until the backup is InProgress with some bytes done.
func (c *Cluster) WaitProgress(pvb *velerov1.PodVolumeBackup, timeout time.Duration) {
	c.t.Helper()
	c.Eventually(timeout, func() (bool, string) {
		if err := c.Client.Get(context.Background(), client.ObjectKeyFromObject(pvb), pvb); err != nil {
			return false, err.Error()
		}
		if pvb.Status.Phase.Terminal() {
			c.t.Fatalf("%s ended %s (%s) before it could be observed in progress", pvb.Name, pvb.Status.Phase, pvb.Status.Message)
		}
		return pvb.Status.Phase == velerov1.PodVolumePhaseInProgress && pvb.Status.Progress.BytesDone > 0,
			fmt.Sprintf("%s is %s with %d bytes done", pvb.Name, pvb.Status.Phase, pvb.Status.Progress.BytesDone)
	})
}
