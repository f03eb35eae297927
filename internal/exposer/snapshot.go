package exposer

import (
	"context"
	"fmt"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// annotationSourceContent names, on the content Ferry made, the source snapshot's content, so
// that a take-over interrupted after Ferry's snapshot existed still removes the source's.
const annotationSourceContent = "ferry.io/source-content"

// Snapshot is a DataUpload's source: a VolumeSnapshot of a claim in the application's namespace.
type Snapshot struct {
	Namespace, Name string
	// StorageClass is the class of the claim it was taken of, used for the volume made from it.
	StorageClass string
}

// contentName is the cluster-wide name of the VolumeSnapshotContent Ferry makes for op.
func contentName(op Operation) string { return "ferry-" + string(op.Owner.GetUID()) }

// ExposeSnapshot takes src over and makes the mover pod that reads it. It is called again until
// it returns no waiting message: the source snapshot must become ready, its content is retained
// and bound to a snapshot of Ferry's in the install namespace (the same storage snapshot), the
// source snapshot is removed from the application's namespace, and a volume is made from Ferry's
// snapshot for the mover pod. Failures that waiting does not cure wrap ErrPermanent.
func (e *Exposer) ExposeSnapshot(ctx context.Context, op Operation, src Snapshot) (waiting string, err error) {
	if err := e.checkMover(); err != nil {
		return "", err
	}
	ours := &snapshotv1.VolumeSnapshot{}
	err = e.Client.Get(ctx, client.ObjectKey{Namespace: e.Namespace, Name: op.name()}, ours)
	if apierrors.IsNotFound(err) {
		if waiting, err := e.takeOver(ctx, op, src); waiting != "" || err != nil {
			return waiting, err
		}
		return "taking the snapshot over", nil
	}
	if err != nil {
		return "", fmt.Errorf("read VolumeSnapshot %s/%s: %w", e.Namespace, op.name(), err)
	}
	if err := e.removeSource(ctx, op, src); err != nil {
		return "", err
	}
	if ours.Status != nil && ours.Status.Error != nil && ours.Status.Error.Message != nil {
		return "", permanent("VolumeSnapshot %s/%s: %s", e.Namespace, ours.Name, *ours.Status.Error.Message)
	}
	if ours.Status == nil || ours.Status.ReadyToUse == nil || !*ours.Status.ReadyToUse {
		return fmt.Sprintf("waiting for VolumeSnapshot %s/%s (taken over from %s/%s) to be ready", e.Namespace, ours.Name, src.Namespace, src.Name), nil
	}
	size := ours.Status.RestoreSize
	if size == nil || size.IsZero() {
		return "", permanent("VolumeSnapshot %s/%s has no restore size", e.Namespace, ours.Name)
	}
	class := src.StorageClass
	group := snapshotv1.GroupName
	pvc := &corev1.PersistentVolumeClaim{ObjectMeta: e.ownedMeta(op), Spec: corev1.PersistentVolumeClaimSpec{
		AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
		StorageClassName: &class,
		DataSource:       &corev1.TypedLocalObjectReference{APIGroup: &group, Kind: "VolumeSnapshot", Name: ours.Name},
		Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: *size}},
	}}
	if class == "" {
		pvc.Spec.StorageClassName = nil
	}
	if err := e.create(ctx, pvc); err != nil {
		return "", err
	}
	return "", e.create(ctx, e.moverPod(op))
}

// takeOver binds the storage snapshot of src to a content and snapshot of Ferry's.
func (e *Exposer) takeOver(ctx context.Context, op Operation, src Snapshot) (waiting string, err error) {
	vs := &snapshotv1.VolumeSnapshot{}
	if err := e.Client.Get(ctx, client.ObjectKey{Namespace: src.Namespace, Name: src.Name}, vs); err != nil {
		if apierrors.IsNotFound(err) {
			return "", permanent("VolumeSnapshot %s/%s not found", src.Namespace, src.Name)
		}
		return "", fmt.Errorf("read VolumeSnapshot %s/%s: %w", src.Namespace, src.Name, err)
	}
	if st := vs.Status; st != nil && st.Error != nil && st.Error.Message != nil {
		return "", permanent("VolumeSnapshot %s/%s failed: %s", src.Namespace, src.Name, *st.Error.Message)
	}
	if st := vs.Status; st == nil || st.ReadyToUse == nil || !*st.ReadyToUse || st.BoundVolumeSnapshotContentName == nil {
		return fmt.Sprintf("waiting for VolumeSnapshot %s/%s to be ready", src.Namespace, src.Name), nil
	}
	content := &snapshotv1.VolumeSnapshotContent{}
	if err := e.Client.Get(ctx, client.ObjectKey{Name: *vs.Status.BoundVolumeSnapshotContentName}, content); err != nil {
		return "", fmt.Errorf("read VolumeSnapshotContent %s of %s/%s: %w", *vs.Status.BoundVolumeSnapshotContentName, src.Namespace, src.Name, err)
	}
	if content.Status == nil || content.Status.SnapshotHandle == nil {
		return fmt.Sprintf("waiting for VolumeSnapshotContent %s to get its snapshot handle", content.Name), nil
	}
	// The storage snapshot must outlive the source objects, which are removed below.
	if err := e.setDeletionPolicy(ctx, content, snapshotv1.VolumeSnapshotContentRetain); err != nil {
		return "", err
	}
	handle := *content.Status.SnapshotHandle
	meta := e.meta(op)
	meta.Namespace, meta.Name = "", contentName(op)
	meta.Annotations = map[string]string{annotationSourceContent: content.Name}
	ours := &snapshotv1.VolumeSnapshotContent{ObjectMeta: meta, Spec: snapshotv1.VolumeSnapshotContentSpec{
		DeletionPolicy:          snapshotv1.VolumeSnapshotContentRetain,
		Driver:                  content.Spec.Driver,
		VolumeSnapshotClassName: content.Spec.VolumeSnapshotClassName,
		SourceVolumeMode:        content.Spec.SourceVolumeMode,
		Source:                  snapshotv1.VolumeSnapshotContentSource{SnapshotHandle: &handle},
		VolumeSnapshotRef:       corev1.ObjectReference{Namespace: e.Namespace, Name: op.name(), Kind: "VolumeSnapshot", APIVersion: snapshotv1.SchemeGroupVersion.String()},
	}}
	if err := e.create(ctx, ours); err != nil {
		return "", err
	}
	name := ours.Name
	snap := &snapshotv1.VolumeSnapshot{ObjectMeta: e.ownedMeta(op), Spec: snapshotv1.VolumeSnapshotSpec{
		Source: snapshotv1.VolumeSnapshotSource{VolumeSnapshotContentName: &name},
	}}
	if vs.Spec.VolumeSnapshotClassName != nil {
		snap.Spec.VolumeSnapshotClassName = vs.Spec.VolumeSnapshotClassName
	}
	if err := e.create(ctx, snap); err != nil {
		return "", err
	}
	return "", e.removeSource(ctx, op, src)
}

// removeSource deletes the source snapshot and its content, whose storage snapshot is retained
// for Ferry's content.
func (e *Exposer) removeSource(ctx context.Context, op Operation, src Snapshot) error {
	ours := &snapshotv1.VolumeSnapshotContent{}
	if err := e.Client.Get(ctx, client.ObjectKey{Name: contentName(op)}, ours); err != nil {
		return client.IgnoreNotFound(err)
	}
	if _, err := e.remove(ctx, &snapshotv1.VolumeSnapshot{ObjectMeta: objectMeta(src.Namespace, src.Name)}); err != nil {
		return err
	}
	if name := ours.Annotations[annotationSourceContent]; name != "" {
		content := &snapshotv1.VolumeSnapshotContent{}
		err := e.Client.Get(ctx, client.ObjectKey{Name: name}, content)
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read VolumeSnapshotContent %s: %w", name, err)
		}
		if content.Spec.DeletionPolicy != snapshotv1.VolumeSnapshotContentRetain {
			return fmt.Errorf("VolumeSnapshotContent %s: deletion policy %s, want Retain before it is removed", name, content.Spec.DeletionPolicy)
		}
		_, err = e.remove(ctx, content)
		return err
	}
	return nil
}

func (e *Exposer) setDeletionPolicy(ctx context.Context, content *snapshotv1.VolumeSnapshotContent, policy snapshotv1.DeletionPolicy) error {
	if content.Spec.DeletionPolicy == policy {
		return nil
	}
	patch := client.MergeFrom(content.DeepCopy())
	content.Spec.DeletionPolicy = policy
	if err := e.Client.Patch(ctx, content, patch); err != nil {
		return fmt.Errorf("set the deletion policy of VolumeSnapshotContent %s to %s: %w", content.Name, policy, err)
	}
	return nil
}

// volumeSize is the size a restore volume asks for: the target claim's request, at least size.
func volumeSize(request resource.Quantity, size int64) resource.Quantity {
	if size > 0 && request.Value() < size {
		return *resource.NewQuantity(size, resource.BinarySI)
	}
	return request
}
