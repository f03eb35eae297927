package backup

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
)

// AnnotationDefaultSnapshotClass marks the default VolumeSnapshotClass of a CSI driver
// (the external-snapshotter's annotation).
const AnnotationDefaultSnapshotClass = "snapshot.storage.kubernetes.io/is-default-class"

// claim is a PVC the data mover backs up: a VolumeSnapshot, then a DataUpload.
type claim struct {
	PVC           *corev1.PersistentVolumeClaim
	StorageClass  string
	SnapshotClass string
	Driver        string
}

// snapshotSupport is what the cluster offers for CSI snapshots, read once per backup.
type snapshotSupport struct {
	// missing says why there are no snapshots at all (no snapshot API), or "".
	missing        string
	snapshotClass  []snapshotv1.VolumeSnapshotClass
	storageClasses map[string]*storagev1.StorageClass
}

func (r *Reconciler) snapshotSupport(ctx context.Context) (*snapshotSupport, error) {
	s := &snapshotSupport{storageClasses: map[string]*storagev1.StorageClass{}}
	list := &snapshotv1.VolumeSnapshotClassList{}
	err := r.Cluster.List(ctx, list)
	if meta.IsNoMatchError(err) || apierrors.IsNotFound(err) {
		s.missing = "the snapshot API (snapshot.storage.k8s.io/v1 VolumeSnapshotClass) is not installed"
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list VolumeSnapshotClasses: %w", err)
	}
	s.snapshotClass = list.Items
	sc := &storagev1.StorageClassList{}
	if err := r.Cluster.List(ctx, sc); err != nil {
		return nil, fmt.Errorf("list StorageClasses: %w", err)
	}
	for i := range sc.Items {
		s.storageClasses[sc.Items[i].Name] = &sc.Items[i]
	}
	return s, nil
}

// classFor finds the VolumeSnapshotClass of a claim: the one its velero.io/csi-volumesnapshot-class
// label names, else the default class of its storage class's provisioner. reason says why there
// is none.
func (s *snapshotSupport) classFor(pvc *corev1.PersistentVolumeClaim) (c claim, reason string) {
	c.PVC = pvc
	if s.missing != "" {
		return c, s.missing
	}
	if pvc.Spec.StorageClassName == nil || *pvc.Spec.StorageClassName == "" {
		return c, "it has no storage class (spec.storageClassName)"
	}
	c.StorageClass = *pvc.Spec.StorageClassName
	sc, ok := s.storageClasses[c.StorageClass]
	if !ok {
		return c, fmt.Sprintf("its storage class %s does not exist", c.StorageClass)
	}
	c.Driver = sc.Provisioner
	if name := pvc.Labels[velerov1.LabelVolumeSnapshotClass]; name != "" {
		i := slices.IndexFunc(s.snapshotClass, func(v snapshotv1.VolumeSnapshotClass) bool { return v.Name == name })
		switch {
		case i < 0:
			return c, fmt.Sprintf("the VolumeSnapshotClass %s that its label %s names does not exist", name, velerov1.LabelVolumeSnapshotClass)
		case s.snapshotClass[i].Driver != c.Driver:
			return c, fmt.Sprintf("the VolumeSnapshotClass %s that its label %s names is for driver %s, not %s",
				name, velerov1.LabelVolumeSnapshotClass, s.snapshotClass[i].Driver, c.Driver)
		}
		c.SnapshotClass = name
		return c, ""
	}
	var defaults []string
	for _, v := range s.snapshotClass {
		if v.Driver == c.Driver && v.Annotations[AnnotationDefaultSnapshotClass] == "true" {
			defaults = append(defaults, v.Name)
		}
	}
	switch len(defaults) {
	case 0:
		return c, fmt.Sprintf("no VolumeSnapshotClass of driver %s (storage class %s) is annotated %s=true",
			c.Driver, c.StorageClass, AnnotationDefaultSnapshotClass)
	case 1:
		c.SnapshotClass = defaults[0]
		return c, ""
	}
	slices.Sort(defaults)
	return c, fmt.Sprintf("%d VolumeSnapshotClasses of driver %s are annotated %s=true (%s); name one with the label %s",
		len(defaults), c.Driver, AnnotationDefaultSnapshotClass, strings.Join(defaults, ", "), velerov1.LabelVolumeSnapshotClass)
}

// selectClaims decides, for the namespace's claims that the file-system path did not take,
// between the data mover (the claim has a VolumeSnapshotClass), the file-system path after all
// (a running pod mounts it and did not opt it out), and skipping it with a reason. Claims no pod
// mounts are backed up too when their labels match the backup's selectors.
func (r *Reconciler) selectClaims(ctx context.Context, sel *selection, support *snapshotSupport, ns string,
	pods []corev1.Pod, others []volume, selectors []labels.Selector) error {
	pvcs := &corev1.PersistentVolumeClaimList{}
	if err := r.Cluster.List(ctx, pvcs, client.InNamespace(ns)); err != nil {
		return fmt.Errorf("list claims in %s: %w", ns, err)
	}
	taken := map[string]bool{} // by the file-system path
	for _, v := range sel.PodVolumes {
		if v.Pod.Namespace == ns && v.Claim != "" {
			taken[v.Claim] = true
		}
	}
	mounted := map[string]bool{} // by any pod of the namespace
	for _, p := range pods {
		for _, v := range p.Spec.Volumes {
			if v.PersistentVolumeClaim != nil {
				mounted[v.PersistentVolumeClaim.ClaimName] = true
			}
		}
	}
	users := map[string][]volume{}
	for _, v := range others {
		if !taken[v.Claim] {
			users[v.Claim] = append(users[v.Claim], v)
		}
	}
	for i := range pvcs.Items {
		pvc := &pvcs.Items[i]
		vols, used := users[pvc.Name]
		if !used && (mounted[pvc.Name] || !matchesAny(selectors, pvc.Labels)) {
			continue
		}
		delete(users, pvc.Name)
		where := "claim " + ns + "/" + pvc.Name
		if pvc.DeletionTimestamp != nil {
			sel.Skipped = append(sel.Skipped, where+": it is being deleted")
			continue
		}
		c, reason := support.classFor(pvc)
		if reason == "" && pvc.Spec.VolumeName == "" {
			reason = "it is not bound to a volume yet"
		}
		if reason == "" {
			sel.Claims = append(sel.Claims, c)
			continue
		}
		fallBack(sel, where, reason, vols)
	}
	for _, name := range slices.Sorted(maps.Keys(users)) { // mounted claims that do not exist
		for _, v := range users[name] {
			sel.Skipped = append(sel.Skipped, fmt.Sprintf("%s/%s volume %s: claim %s does not exist", ns, v.Pod.Name, v.Volume, name))
		}
	}
	return nil
}

// fallBack sends a claim without snapshot support through the file-system path, by the first
// running pod that mounts it and did not opt it out; else it is skipped with the reason.
func fallBack(sel *selection, where, reason string, users []volume) {
	if len(users) == 0 {
		sel.Skipped = append(sel.Skipped, where+": no pod mounts it and the data mover cannot snapshot it: "+reason)
		return
	}
	var why []string
	for _, v := range users {
		switch {
		case v.Excluded:
			why = append(why, fmt.Sprintf("pod %s opts volume %s out with %s", v.Pod.Name, v.Volume, velerov1.AnnotationBackupVolumesExcludes))
		case notRunning(v.Pod) != "":
			why = append(why, fmt.Sprintf("pod %s: %s", v.Pod.Name, notRunning(v.Pod)))
		default:
			sel.PodVolumes = append(sel.PodVolumes, v)
			return
		}
	}
	sel.Skipped = append(sel.Skipped, fmt.Sprintf("%s: the data mover cannot snapshot it (%s) and the file-system path cannot read it (%s)",
		where, reason, strings.Join(why, "; ")))
}
