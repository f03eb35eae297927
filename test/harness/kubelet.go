package harness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ReportNodeAgents creates what a Velero server looks for before it hands a pod's volumes to a
// node-agent: the DaemonSet node-agent in the install namespace and, for every node started so
// far, a Running pod of it on that node labelled role=node-agent, as the DaemonSet controller and
// the kubelet would. The pods are records only; the nodes' agents are the harness's processes.
func (c *Cluster) ReportNodeAgents() {
	c.t.Helper()
	ctx := context.Background()
	labels := map[string]string{"name": "node-agent", "role": "node-agent"}
	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: c.Install, Name: "node-agent", Labels: map[string]string{"component": "velero"}},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"name": "node-agent"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "node-agent", Image: "ferry-node-agent"}}},
			},
		},
	}
	if err := c.Client.Create(ctx, ds); err != nil && !isAlreadyExists(err) {
		c.t.Fatalf("harness: create DaemonSet node-agent: %v", err)
	}
	c.mu.Lock()
	nodes := make([]string, 0, len(c.nodes))
	for name := range c.nodes {
		nodes = append(nodes, name)
	}
	c.mu.Unlock()
	for _, node := range nodes {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: c.Install, Name: "node-agent-" + node, Labels: labels},
			Spec: corev1.PodSpec{NodeName: node, AutomountServiceAccountToken: new(bool),
				Containers: []corev1.Container{{Name: "node-agent", Image: "ferry-node-agent"}}},
		}
		if err := c.Client.Create(ctx, pod); err != nil {
			if isAlreadyExists(err) {
				continue
			}
			c.t.Fatalf("harness: create node-agent pod of %s: %v", node, err)
		}
		pod.Status.Phase = corev1.PodRunning
		if err := c.Client.Status().Update(ctx, pod); err != nil {
			c.t.Fatalf("harness: node-agent pod of %s: status: %v", node, err)
		}
	}
}

// SchedulePod plays the provisioner, the scheduler and the kubelet for a pod someone else
// creates (Velero's restore): it waits for the pod, gives each of its unbound claims a new CSI
// PV, binds the pod to node, makes its volumes' directories and reports the pod Pending with its
// first init container Running (Velero's restore-wait), or Running when it has none.
func (c *Cluster) SchedulePod(node *Node, namespace, name string, timeout time.Duration) *Pod {
	c.t.Helper()
	ctx := context.Background()
	pod := &corev1.Pod{}
	c.Eventually(timeout, func() (bool, string) {
		err := c.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, pod)
		return err == nil, fmt.Sprintf("pod %s/%s: %v", namespace, name, err)
	})
	p := &Pod{Pod: pod, Node: node, Dirs: map[string]string{}}
	for _, v := range pod.Spec.Volumes {
		dir := filepath.Join(node.Root, string(pod.UID), "volumes", "kubernetes.io~empty-dir", v.Name)
		if v.PersistentVolumeClaim != nil {
			pv := c.bindClaim(ctx, namespace, v.PersistentVolumeClaim.ClaimName, timeout)
			dir = filepath.Join(node.Root, string(pod.UID), "volumes", "kubernetes.io~csi", pv, "mount")
		} else if v.EmptyDir == nil {
			continue
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			c.t.Fatal(err)
		}
		p.Dirs[v.Name] = dir
	}
	if pod.Spec.NodeName == "" {
		binding := &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
			Target: corev1.ObjectReference{Kind: "Node", Name: node.Name}}
		if err := c.Client.SubResource("binding").Create(ctx, pod, binding); err != nil {
			c.t.Fatalf("harness: bind pod %s/%s to %s: %v", namespace, name, node.Name, err)
		}
	}
	c.setPodStatus(p, func(st *corev1.PodStatus) {
		now := metav1.Now()
		if len(pod.Spec.InitContainers) == 0 {
			st.Phase = corev1.PodRunning
			return
		}
		st.Phase = corev1.PodPending
		st.InitContainerStatuses = nil
		for i, ic := range pod.Spec.InitContainers {
			s := corev1.ContainerStatus{Name: ic.Name, Image: ic.Image,
				State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "PodInitializing"}}}
			if i == 0 {
				s.State = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}
			}
			st.InitContainerStatuses = append(st.InitContainerStatuses, s)
		}
	})
	return p
}

// FinishInit reports the pod's init containers done and the pod Running, as the kubelet does
// once the last init container exits 0.
func (c *Cluster) FinishInit(p *Pod) {
	c.t.Helper()
	c.setPodStatus(p, func(st *corev1.PodStatus) {
		now := metav1.Now()
		st.Phase = corev1.PodRunning
		for i := range st.InitContainerStatuses {
			st.InitContainerStatuses[i].State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed", FinishedAt: now}}
			st.InitContainerStatuses[i].Ready = true
		}
	})
}

// setPodStatus re-reads the pod, mutates its status and writes it, retrying on conflicts.
func (c *Cluster) setPodStatus(p *Pod, mutate func(*corev1.PodStatus)) {
	c.t.Helper()
	ctx := context.Background()
	for attempt := 0; ; attempt++ {
		if err := c.Client.Get(ctx, client.ObjectKeyFromObject(p.Pod), p.Pod); err != nil {
			c.t.Fatalf("harness: read pod %s/%s: %v", p.Namespace, p.Name, err)
		}
		mutate(&p.Status)
		err := c.Client.Status().Update(ctx, p.Pod)
		if err == nil {
			return
		}
		if !apierrors.IsConflict(err) || attempt == 10 {
			c.t.Fatalf("harness: pod %s/%s status: %v", p.Namespace, p.Name, err)
		}
	}
}

// bindClaim binds an unbound claim to a new CSI PV, as a provisioner and the PV controller would,
// and returns the PV's name.
func (c *Cluster) bindClaim(ctx context.Context, namespace, claim string, timeout time.Duration) string {
	c.t.Helper()
	pvc := &corev1.PersistentVolumeClaim{}
	c.Eventually(timeout, func() (bool, string) {
		err := c.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: claim}, pvc)
		return err == nil, fmt.Sprintf("claim %s/%s: %v", namespace, claim, err)
	})
	if pvc.Spec.VolumeName != "" {
		return pvc.Spec.VolumeName
	}
	class := ""
	if pvc.Spec.StorageClassName != nil {
		class = *pvc.Spec.StorageClassName
	}
	pv := c.createPV(ctx, namespace, claim, class)
	pvc.Spec.VolumeName = pv.Name
	if err := c.Client.Update(ctx, pvc); err != nil {
		c.t.Fatalf("harness: bind claim %s/%s: %v", namespace, claim, err)
	}
	pvc.Status.Phase = corev1.ClaimBound
	pvc.Status.Capacity = pv.Spec.Capacity
	pvc.Status.AccessModes = pv.Spec.AccessModes
	if err := c.Client.Status().Update(ctx, pvc); err != nil {
		c.t.Fatalf("harness: claim %s/%s status: %v", namespace, claim, err)
	}
	return pv.Name
}
