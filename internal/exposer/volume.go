package exposer

import (
	"context"
	"fmt"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Target is a DataDownload's target: a claim in the application's namespace that waits, unbound,
// for the volume the download fills.
type Target struct {
	Namespace, Name string
	// Size is the snapshot's logical size; the volume asks for at least that much.
	Size int64
}

// ExposeTarget makes a volume modelled on the target claim (class, access modes, size, volume
// mode) and the mover pod that writes into it.
func (e *Exposer) ExposeTarget(ctx context.Context, op Operation, t Target) error {
	if err := e.checkMover(); err != nil {
		return err
	}
	target := &corev1.PersistentVolumeClaim{}
	if err := e.Client.Get(ctx, client.ObjectKey{Namespace: t.Namespace, Name: t.Name}, target); err != nil {
		if apierrors.IsNotFound(err) {
			return permanent("target PersistentVolumeClaim %s/%s not found", t.Namespace, t.Name)
		}
		return fmt.Errorf("read target PersistentVolumeClaim %s/%s: %w", t.Namespace, t.Name, err)
	}
	if target.Spec.VolumeName != "" {
		return permanent("target PersistentVolumeClaim %s/%s is bound to volume %s already; a restore fills only a new claim", t.Namespace, t.Name, target.Spec.VolumeName)
	}
	if selectorValue(target) == "" {
		return permanent("target PersistentVolumeClaim %s/%s has no selector on label %s, so it would get a new empty volume of its own", t.Namespace, t.Name, LabelDynamicPVRestore)
	}
	modes := target.Spec.AccessModes
	if len(modes) == 0 {
		modes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}
	}
	pvc := &corev1.PersistentVolumeClaim{ObjectMeta: e.ownedMeta(op), Spec: corev1.PersistentVolumeClaimSpec{
		AccessModes: modes, StorageClassName: target.Spec.StorageClassName, VolumeMode: target.Spec.VolumeMode,
		Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{
			corev1.ResourceStorage: volumeSize(target.Spec.Resources.Requests[corev1.ResourceStorage], t.Size)}},
	}}
	if err := e.create(ctx, pvc); err != nil {
		return err
	}
	return e.create(ctx, e.moverPod(op))
}

func selectorValue(pvc *corev1.PersistentVolumeClaim) string {
	if pvc.Spec.Selector == nil {
		return ""
	}
	return pvc.Spec.Selector.MatchLabels[LabelDynamicPVRestore]
}

// HandOver gives the filled volume to the target claim: the volume is retained while its claim in
// the install namespace is deleted, then bound to the target (the claim reference and the label
// the target selects), and gets its reclaim policy back once bound. It is called again until it returns no
// waiting message.
func (e *Exposer) HandOver(ctx context.Context, op Operation, t Target) (waiting string, err error) {
	target := &corev1.PersistentVolumeClaim{}
	if err := e.Client.Get(ctx, client.ObjectKey{Namespace: t.Namespace, Name: t.Name}, target); err != nil {
		if apierrors.IsNotFound(err) {
			return "", permanent("target PersistentVolumeClaim %s/%s was deleted during the restore", t.Namespace, t.Name)
		}
		return "", fmt.Errorf("read target PersistentVolumeClaim %s/%s: %w", t.Namespace, t.Name, err)
	}
	pv, err := e.volume(ctx, op)
	if err != nil || pv == nil {
		return "", err
	}
	if target.Status.Phase == corev1.ClaimBound && target.Spec.VolumeName == pv.Name {
		// Handed over: the volume is the application's now, with its reclaim policy back, and no
		// longer Ferry's to clean up.
		patch := client.MergeFrom(pv.DeepCopy())
		delete(pv.Labels, LabelOperation)
		if policy, ok := pv.Annotations[annotationReclaimPolicy]; ok {
			pv.Spec.PersistentVolumeReclaimPolicy = corev1.PersistentVolumeReclaimPolicy(policy)
			delete(pv.Annotations, annotationReclaimPolicy)
		}
		return "", e.Client.Patch(ctx, pv, patch)
	}
	if _, ok := pv.Annotations[annotationReclaimPolicy]; !ok {
		patch := client.MergeFrom(pv.DeepCopy())
		if pv.Annotations == nil {
			pv.Annotations = map[string]string{}
		}
		pv.Annotations[annotationReclaimPolicy] = string(pv.Spec.PersistentVolumeReclaimPolicy)
		pv.Spec.PersistentVolumeReclaimPolicy = corev1.PersistentVolumeReclaimRetain
		if err := e.Client.Patch(ctx, pv, patch); err != nil {
			return "", fmt.Errorf("retain PersistentVolume %s: %w", pv.Name, err)
		}
	}
	if err := e.StopMover(ctx, op); err != nil {
		return "", err
	}
	if gone, err := e.remove(ctx, &corev1.PersistentVolumeClaim{ObjectMeta: objectMeta(e.Namespace, op.name())}); err != nil || !gone {
		return fmt.Sprintf("releasing PersistentVolume %s from claim %s/%s", pv.Name, e.Namespace, op.name()), err
	}
	ref := pv.Spec.ClaimRef
	if ref == nil || ref.Namespace != t.Namespace || ref.Name != t.Name {
		patch := client.MergeFrom(pv.DeepCopy())
		pv.Spec.ClaimRef = &corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1", Namespace: t.Namespace, Name: t.Name}
		pv.Labels[LabelDynamicPVRestore] = selectorValue(target)
		// Still Retain: the volume is Released until it binds, and a Released volume with the
		// Delete policy would be deleted.
		if err := e.Client.Patch(ctx, pv, patch); err != nil {
			return "", fmt.Errorf("bind PersistentVolume %s to %s/%s: %w", pv.Name, t.Namespace, t.Name, err)
		}
	}
	return fmt.Sprintf("waiting for PersistentVolumeClaim %s/%s to bind PersistentVolume %s", t.Namespace, t.Name, pv.Name), nil
}

// volume returns the volume made for op: the one labelled as op's, or the one whose claim
// reference names op's claim (bound, or released once that claim is deleted). It labels it as
// op's on first sight, so that cleanup finds it whatever happened since.
func (e *Exposer) volume(ctx context.Context, op Operation) (*corev1.PersistentVolume, error) {
	list := &corev1.PersistentVolumeList{}
	if err := e.Client.List(ctx, list); err != nil {
		return nil, fmt.Errorf("list PersistentVolumes: %w", err)
	}
	uid := string(op.Owner.GetUID())
	var pv *corev1.PersistentVolume
	for i := range list.Items {
		p := &list.Items[i]
		ref := p.Spec.ClaimRef
		if p.Labels[LabelOperation] == uid || ref != nil && ref.Namespace == e.Namespace && ref.Name == op.name() {
			pv = p
			break
		}
	}
	if pv == nil {
		return nil, permanent("no PersistentVolume is bound to the restore's claim %s/%s", e.Namespace, op.name())
	}
	if pv.Labels[LabelOperation] == uid {
		return pv, nil
	}
	patch := client.MergeFrom(pv.DeepCopy())
	if pv.Labels == nil {
		pv.Labels = map[string]string{}
	}
	pv.Labels[LabelOperation] = uid
	if err := e.Client.Patch(ctx, pv, patch); err != nil {
		return nil, fmt.Errorf("label PersistentVolume %s: %w", pv.Name, err)
	}
	return pv, nil
}

// Cleanup removes what was made for op, reporting whether all of it is gone: the mover pod, the
// claim in the install namespace, a restored volume not handed over, Ferry's snapshot and its
// content (deleting the storage snapshot), and the source snapshot of an upload if still there.
func (e *Exposer) Cleanup(ctx context.Context, op Operation, src *Snapshot) (done bool, err error) {
	done = true
	step := func(gone bool, err error) error {
		done = done && gone
		return err
	}
	if err := step(e.remove(ctx, &corev1.Pod{ObjectMeta: objectMeta(e.Namespace, op.name())})); err != nil {
		return false, err
	}
	// A volume retained for a hand-over that did not happen goes too.
	pvs := &corev1.PersistentVolumeList{}
	if err := e.Client.List(ctx, pvs, client.MatchingLabels{LabelOperation: string(op.Owner.GetUID())}); err != nil {
		return false, fmt.Errorf("list PersistentVolumes of %s: %w", op.name(), err)
	}
	for i := range pvs.Items {
		pv := &pvs.Items[i]
		patch := client.MergeFrom(pv.DeepCopy())
		if ref := pv.Spec.ClaimRef; ref != nil && ref.Namespace != e.Namespace {
			// Handed over to its target already (the mover had finished): the application's.
			delete(pv.Labels, LabelOperation)
			if policy, ok := pv.Annotations[annotationReclaimPolicy]; ok {
				pv.Spec.PersistentVolumeReclaimPolicy = corev1.PersistentVolumeReclaimPolicy(policy)
				delete(pv.Annotations, annotationReclaimPolicy)
			}
			if err := e.Client.Patch(ctx, pv, patch); err != nil {
				return false, fmt.Errorf("PersistentVolume %s: %w", pv.Name, err)
			}
			continue
		}
		done = false
		if pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimDelete {
			pv.Spec.PersistentVolumeReclaimPolicy = corev1.PersistentVolumeReclaimDelete
			if err := e.Client.Patch(ctx, pv, patch); err != nil {
				return false, fmt.Errorf("PersistentVolume %s: %w", pv.Name, err)
			}
		}
		if pv.Status.Phase == corev1.VolumeReleased || pv.Status.Phase == corev1.VolumeAvailable {
			if _, err := e.remove(ctx, pv); err != nil {
				return false, err
			}
		}
	}
	if err := step(e.remove(ctx, &corev1.PersistentVolumeClaim{ObjectMeta: objectMeta(e.Namespace, op.name())})); err != nil {
		return false, err
	}
	if op.Upload {
		if err := e.deleteSnapshotAndContent(ctx, objectMeta(e.Namespace, op.name()), contentName(op), &done); err != nil {
			return false, err
		}
		if src != nil {
			if err := e.deleteSnapshotAndContent(ctx, objectMeta(src.Namespace, src.Name), "", &done); err != nil {
				return false, err
			}
		}
	}
	return done, nil
}

// deleteSnapshotAndContent deletes a snapshot and its content with the storage snapshot.
func (e *Exposer) deleteSnapshotAndContent(ctx context.Context, snap metav1.ObjectMeta, content string, done *bool) error {
	vs := &snapshotv1.VolumeSnapshot{}
	err := e.Client.Get(ctx, client.ObjectKey{Namespace: snap.Namespace, Name: snap.Name}, vs)
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("read VolumeSnapshot %s/%s: %w", snap.Namespace, snap.Name, err)
	}
	if err == nil {
		*done = false
		if vs.Status != nil && vs.Status.BoundVolumeSnapshotContentName != nil {
			content = *vs.Status.BoundVolumeSnapshotContentName
		}
	}
	if content != "" {
		c := &snapshotv1.VolumeSnapshotContent{}
		cerr := e.Client.Get(ctx, client.ObjectKey{Name: content}, c)
		if cerr != nil && !apierrors.IsNotFound(cerr) {
			return fmt.Errorf("read VolumeSnapshotContent %s: %w", content, cerr)
		}
		if cerr == nil {
			*done = false
			if err := e.setDeletionPolicy(ctx, c, snapshotv1.VolumeSnapshotContentDelete); err != nil {
				return err
			}
			if apierrors.IsNotFound(err) { // no snapshot left to delete it: delete it directly
				if _, err := e.remove(ctx, c); err != nil {
					return err
				}
			}
		}
	}
	if err == nil {
		if _, err := e.remove(ctx, vs); err != nil {
			return err
		}
	}
	return nil
}
