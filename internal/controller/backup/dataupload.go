package backup

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/ferry-backup/ferry/api/shared"
	velerov1 "github.com/ferry-backup/ferry/api/v1"
	velerov2alpha1 "github.com/ferry-backup/ferry/api/v2alpha1"
	"github.com/ferry-backup/ferry/internal/operation"
)

// DataMoverConfigParallelFilesUpload is the dataMoverConfig key of spec.uploaderConfig.parallelFilesUpload.
const DataMoverConfigParallelFilesUpload = "parallelFilesUpload"

// DataUploadName is the name of the DataUpload of one claim in one backup, and of the
// VolumeSnapshot it moves (in the claim's namespace): the same for the same inputs, so that a
// restarted server finds what it made before.
func DataUploadName(backup, namespace, claim string) string {
	return operation.ShortName(backup, namespace, claim)
}

// PVCLabelValue is the velero.io/pvc-namespace-name label of a claim: "<namespace>.<claim>",
// shortened with a hash when it is longer than a label value may be.
func PVCLabelValue(namespace, claim string) string {
	v := namespace + "." + claim
	if len(v) <= 63 {
		return v
	}
	sum := sha256.Sum256([]byte(v))
	return v[:52] + "-" + hex.EncodeToString(sum[:5])
}

// createDataUpload makes the VolumeSnapshot of a claim, then the DataUpload that moves its data,
// unless the DataUpload exists. skip says why the claim cannot go this way (the API server
// refused the objects as invalid); the snapshot is then deleted.
func (r *Reconciler) createDataUpload(ctx context.Context, b *velerov1.Backup, bsl string, c claim) (skip string, err error) {
	name := DataUploadName(b.Name, c.PVC.Namespace, c.PVC.Name)
	du := &velerov2alpha1.DataUpload{}
	err = r.Client.Get(ctx, client.ObjectKey{Namespace: b.Namespace, Name: name}, du)
	if err == nil {
		return "", nil // made before a restart; the node-agent may have taken its snapshot over already
	}
	if !apierrors.IsNotFound(err) {
		return "", err
	}
	vs, err := r.ensureSnapshot(ctx, b, name, c)
	if err != nil {
		if apierrors.IsInvalid(err) {
			return fmt.Sprintf("claim %s/%s: VolumeSnapshot %s: %v", c.PVC.Namespace, c.PVC.Name, name, err), nil
		}
		return "", err
	}
	du = r.dataUpload(b, bsl, name, c)
	err = r.Client.Create(ctx, du)
	if err == nil || apierrors.IsAlreadyExists(err) {
		return "", nil
	}
	if !apierrors.IsInvalid(err) {
		return "", err
	}
	// Nobody will take this snapshot over: it is the server's to delete.
	if derr := client.IgnoreNotFound(r.Client.Delete(ctx, vs)); derr != nil {
		log.FromContext(ctx).Error(derr, "delete the VolumeSnapshot of a refused DataUpload", "volumeSnapshot", vs.Namespace+"/"+vs.Name)
	}
	return fmt.Sprintf("claim %s/%s: DataUpload %s: %v", c.PVC.Namespace, c.PVC.Name, name, err), nil
}

// ensureSnapshot gets or creates the claim's VolumeSnapshot.
func (r *Reconciler) ensureSnapshot(ctx context.Context, b *velerov1.Backup, name string, c claim) (*snapshotv1.VolumeSnapshot, error) {
	vs := &snapshotv1.VolumeSnapshot{}
	err := r.Cluster.Get(ctx, client.ObjectKey{Namespace: c.PVC.Namespace, Name: name}, vs)
	if err == nil {
		if uid := vs.Labels[velerov1.LabelBackupUID]; uid != string(b.UID) {
			return nil, fmt.Errorf("VolumeSnapshot %s/%s exists but belongs to backup UID %q, not %s", vs.Namespace, vs.Name, uid, b.UID)
		}
		return vs, nil
	}
	if !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("get VolumeSnapshot %s/%s: %w", c.PVC.Namespace, name, err)
	}
	pvc, class := c.PVC.Name, c.SnapshotClass
	vs = &snapshotv1.VolumeSnapshot{
		ObjectMeta: metav1.ObjectMeta{Namespace: c.PVC.Namespace, Name: name,
			Labels: map[string]string{velerov1.LabelBackupName: b.Name, velerov1.LabelBackupUID: string(b.UID)}},
		Spec: snapshotv1.VolumeSnapshotSpec{
			Source:                  snapshotv1.VolumeSnapshotSource{PersistentVolumeClaimName: &pvc},
			VolumeSnapshotClassName: &class,
		},
	}
	if err := r.Client.Create(ctx, vs); err != nil && !apierrors.IsAlreadyExists(err) {
		return vs, fmt.Errorf("create VolumeSnapshot %s/%s: %w", vs.Namespace, vs.Name, err)
	}
	return vs, nil
}

func (r *Reconciler) dataUpload(b *velerov1.Backup, bsl, name string, c claim) *velerov2alpha1.DataUpload {
	timeout := b.Spec.ItemOperationTimeout.Duration
	if timeout <= 0 {
		timeout = DefaultVolumeTimeout
	}
	no := false
	du := &velerov2alpha1.DataUpload{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: b.Namespace, Name: name,
			Labels: map[string]string{velerov1.LabelBackupName: b.Name, velerov1.LabelBackupUID: string(b.UID),
				velerov1.LabelPVCNamespaceName: PVCLabelValue(c.PVC.Namespace, c.PVC.Name)},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: velerov1.GroupVersion.String(), Kind: "Backup",
				Name: b.Name, UID: b.UID, Controller: &no, BlockOwnerDeletion: &no}},
		},
		Spec: velerov2alpha1.DataUploadSpec{
			SnapshotType: velerov2alpha1.SnapshotTypeCSI,
			CSISnapshot: &velerov2alpha1.CSISnapshotSpec{VolumeSnapshot: name, StorageClass: c.StorageClass,
				SnapshotClass: c.SnapshotClass, Driver: c.Driver},
			SourcePVC:             c.PVC.Name,
			SourceNamespace:       c.PVC.Namespace,
			BackupStorageLocation: bsl,
			DataMover:             velerov2alpha1.DataMoverFerry,
			OperationTimeout:      shared.Duration{Duration: timeout},
		},
	}
	if u := b.Spec.UploaderConfig; u != nil && u.ParallelFilesUpload > 0 {
		du.Spec.DataMoverConfig = map[string]string{DataMoverConfigParallelFilesUpload: strconv.Itoa(u.ParallelFilesUpload)}
	}
	return du
}

// dataUploads lists the backup's DataUploads (not those of an older backup of the same name).
func (r *Reconciler) dataUploads(ctx context.Context, b *velerov1.Backup) ([]velerov2alpha1.DataUpload, error) {
	list := &velerov2alpha1.DataUploadList{}
	if err := r.Client.List(ctx, list, client.InNamespace(b.Namespace), client.MatchingLabels{velerov1.LabelBackupName: b.Name}); err != nil {
		return nil, err
	}
	return slices.DeleteFunc(list.Items, func(d velerov2alpha1.DataUpload) bool {
		return d.Labels[velerov1.LabelBackupUID] != string(b.UID)
	}), nil
}

// deleteOrphanSnapshots deletes the backup's VolumeSnapshots for which no DataUpload was made:
// no node-agent takes them over. Those with a DataUpload are the node-agent's to clean up.
func (r *Reconciler) deleteOrphanSnapshots(ctx context.Context, b *velerov1.Backup, dus []velerov2alpha1.DataUpload) error {
	list := &snapshotv1.VolumeSnapshotList{}
	err := r.Cluster.List(ctx, list, client.MatchingLabels{velerov1.LabelBackupUID: string(b.UID)})
	if meta.IsNoMatchError(err) || apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list the VolumeSnapshots of backup %s: %w", b.Name, err)
	}
	moved := map[string]bool{}
	for _, d := range dus {
		if d.Spec.CSISnapshot != nil {
			moved[d.Spec.SourceNamespace+"/"+d.Spec.CSISnapshot.VolumeSnapshot] = true
		}
	}
	for i := range list.Items {
		vs := &list.Items[i]
		if moved[vs.Namespace+"/"+vs.Name] {
			continue
		}
		if err := r.Client.Delete(ctx, vs); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("delete VolumeSnapshot %s/%s of backup %s: %w", vs.Namespace, vs.Name, b.Name, err)
		}
		log.FromContext(ctx).Info("deleted a VolumeSnapshot no DataUpload took over", "backup", b.Name, "volumeSnapshot", vs.Namespace+"/"+vs.Name)
	}
	return nil
}
