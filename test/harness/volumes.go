package harness

import (
	"context"
	"os"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// CSIDriver is the driver name of the harness's PersistentVolumes.
const CSIDriver = "harness.csi.ferry.dev"

// VolumeSpec describes one volume of a pod the harness creates.
type VolumeSpec struct {
	Name string
	// Claim, when set, backs the volume with a PVC of that name bound to a CSI PV; otherwise the
	// volume is an emptyDir.
	Claim string
	// StorageClass is the claim's spec.storageClassName; empty leaves it unset.
	StorageClass string
}

// Pod is a pod the harness created and laid out on a node.
type Pod struct {
	*corev1.Pod
	Node *Node
	// Dirs maps each volume name to its directory in the node's pods directory.
	Dirs map[string]string
}

// Namespace creates a namespace for a test's pods, named prefix-<random>, and returns its name.
func (c *Cluster) Namespace(prefix string) string {
	c.t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"}}
	if err := c.Client.Create(context.Background(), ns); err != nil {
		c.t.Fatalf("harness: namespace %s: %v", prefix, err)
	}
	return ns.Name
}

// CreatePod creates claims, volumes and a running pod on node, and makes each volume's directory
// in the node's pods directory as the kubelet would.
func (c *Cluster) CreatePod(node *Node, namespace, name string, vols ...VolumeSpec) *Pod {
	c.t.Helper()
	ctx := context.Background()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{
			NodeName:                     node.Name,
			AutomountServiceAccountToken: new(bool),
			Containers:                   []corev1.Container{{Name: "app", Image: "registry.invalid/app:1"}},
		},
	}
	for _, v := range vols {
		src := corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}
		if v.Claim != "" {
			c.createClaim(ctx, namespace, v.Claim, v.StorageClass)
			src = corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: v.Claim}}
		}
		pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: v.Name, VolumeSource: src})
		// Mounted by the app, as the kubelet makes a volume's directory only for a mounted volume
		// (Velero skips volumes no container mounts).
		pod.Spec.Containers[0].VolumeMounts = append(pod.Spec.Containers[0].VolumeMounts, corev1.VolumeMount{Name: v.Name, MountPath: "/data/" + v.Name})
	}
	if err := c.Client.Create(ctx, pod); err != nil {
		c.t.Fatalf("harness: create pod %s/%s: %v", namespace, name, err)
	}
	pod.Status.Phase = corev1.PodRunning
	if err := c.Client.Status().Update(ctx, pod); err != nil {
		c.t.Fatalf("harness: pod %s/%s status: %v", namespace, name, err)
	}
	p := &Pod{Pod: pod, Node: node, Dirs: map[string]string{}}
	for _, v := range vols {
		dir := filepath.Join(node.Root, string(pod.UID), "volumes", "kubernetes.io~empty-dir", v.Name)
		if v.Claim != "" {
			dir = filepath.Join(node.Root, string(pod.UID), "volumes", "kubernetes.io~csi", pvName(namespace, v.Claim), "mount")
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			c.t.Fatal(err)
		}
		p.Dirs[v.Name] = dir
	}
	return p
}

func pvName(namespace, claim string) string { return "pv-" + namespace + "-" + claim }

// createClaim creates a PVC bound to a CSI PV, unless it exists.
func (c *Cluster) createClaim(ctx context.Context, namespace, claim, class string) {
	c.t.Helper()
	pv := c.createPV(ctx, namespace, claim, class)
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: claim},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: pv.Spec.Capacity[corev1.ResourceStorage]}},
			VolumeName:  pv.Name,
		},
	}
	if class != "" {
		pvc.Spec.StorageClassName = &class
	}
	if err := c.Client.Create(ctx, pvc); err != nil && !isAlreadyExists(err) {
		c.t.Fatalf("harness: create PVC: %v", err)
	}
}

// createPV creates the CSI PV of a claim, unless it exists, as a provisioner would.
func (c *Cluster) createPV(ctx context.Context, namespace, claim, class string) *corev1.PersistentVolume {
	c.t.Helper()
	size := resource.MustParse("1Gi")
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: pvName(namespace, claim)},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:    corev1.ResourceList{corev1.ResourceStorage: size},
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{
				Driver: CSIDriver, VolumeHandle: namespace + "/" + claim}},
			ClaimRef:         &corev1.ObjectReference{Namespace: namespace, Name: claim},
			StorageClassName: class,
		},
	}
	if err := c.Client.Create(ctx, pv); err != nil && !isAlreadyExists(err) {
		c.t.Fatalf("harness: create PV: %v", err)
	}
	return pv
}
