package restore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferry-backup/ferry/api/shared"
	velerov1 "github.com/ferry-backup/ferry/api/v1"
	velerov2alpha1 "github.com/ferry-backup/ferry/api/v2alpha1"
	"github.com/ferry-backup/ferry/internal/backuprecord"
	"github.com/ferry-backup/ferry/internal/operation"
)

// DefaultVolumeTimeout bounds a DataDownload of a restore without spec.itemOperationTimeout.
const DefaultVolumeTimeout = operation.DefaultTimeout

// Where a volume goes.
const (
	toPod   = "pod"   // a PodVolumeRestore into a running pod
	toClaim = "claim" // a re-created claim, filled by a DataDownload
)

// DynamicPVRestoreValue is the velero.io/dynamic-pv-restore label value of one claim that one
// restore re-creates: unique per restore and claim, and a valid label value.
func DynamicPVRestoreValue(restoreUID, namespace, claim string) string {
	sum := sha256.Sum256([]byte(restoreUID + "\x00" + namespace + "\x00" + claim))
	return hex.EncodeToString(sum[:10])
}

// DataDownloadName is the name of the DataDownload that fills one claim in one restore.
func DataDownloadName(restore, namespace, claim string) string {
	return operation.ShortName(restore, namespace, claim)
}

// place starts the restore of one backed-up volume: a claim missing from the target namespace
// is re-created from the record and filled by a DataDownload; a claim that exists, or a volume
// without a claim, is written into a running pod by a PodVolumeRestore. It returns where the
// volume goes, or why it is skipped. done holds the claims already placed, so that a claim
// several pods mounted is restored once.
func (r *Reconciler) place(ctx context.Context, rs *velerov1.Restore, rec backuprecord.Record, v backuprecord.Volume, done map[string]bool) (to, skip string, err error) {
	ns := targetNamespace(rs, v.Namespace)
	if v.Claim == "" {
		return r.toPod(ctx, rs, rec, v)
	}
	if done[ns+"/"+v.Claim] {
		return "", "", nil
	}
	done[ns+"/"+v.Claim] = true
	what := describe(v)
	value := DynamicPVRestoreValue(string(rs.UID), ns, v.Claim)
	pvc := &corev1.PersistentVolumeClaim{}
	err = r.Cluster.Get(ctx, client.ObjectKey{Namespace: ns, Name: v.Claim}, pvc)
	switch {
	case err == nil && pvc.Spec.Selector != nil && pvc.Spec.Selector.MatchLabels[velerov1.LabelDynamicPVRestore] == value:
		// This restore made it, before a restart.
	case err == nil:
		return r.toPod(ctx, rs, rec, v)
	case !apierrors.IsNotFound(err):
		return "", "", fmt.Errorf("get claim %s/%s: %w", ns, v.Claim, err)
	case v.ClaimSpec == nil:
		return "", fmt.Sprintf("%s: claim %s does not exist in %s and the backup's record holds no claim spec to re-create it", what, v.Claim, ns), nil
	default:
		skip, err := r.createClaim(ctx, rs, rec, v, ns, value)
		if err != nil || skip != "" {
			return "", skip, err
		}
	}
	return toClaim, "", r.createDataDownload(ctx, rs, rec, v, ns)
}

// createClaim re-creates a claim from its spec in the record, with no volume of its own: the
// selector lets only the volume the data mover fills for this restore bind to it (a claim with
// a selector is not provisioned dynamically).
func (r *Reconciler) createClaim(ctx context.Context, rs *velerov1.Restore, rec backuprecord.Record, v backuprecord.Volume, ns, value string) (string, error) {
	spec := v.ClaimSpec.DeepCopy()
	spec.VolumeName = ""
	spec.DataSource, spec.DataSourceRef = nil, nil
	spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{velerov1.LabelDynamicPVRestore: value}}
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: v.Claim,
			Labels: map[string]string{velerov1.LabelRestoreName: rs.Name, velerov1.LabelBackupName: rec.Name}},
		Spec: *spec,
	}
	// A restore into a deleted (or a mapped, new) namespace makes the namespace first, as Velero
	// does; the application's manifests applied later find their claims there.
	nsObj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{velerov1.LabelRestoreName: rs.Name}}}
	if err := r.Client.Create(ctx, nsObj); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("create namespace %s: %w", ns, err)
	}
	err := r.Client.Create(ctx, pvc)
	switch {
	case err == nil, apierrors.IsAlreadyExists(err):
		return "", nil
	case apierrors.IsNotFound(err):
		return fmt.Sprintf("%s: claim %s cannot be re-created: namespace %s does not exist", describe(v), v.Claim, ns), nil
	case apierrors.IsInvalid(err), apierrors.IsForbidden(err):
		return fmt.Sprintf("%s: claim %s cannot be re-created in %s: %v", describe(v), v.Claim, ns, err), nil
	}
	return "", fmt.Errorf("create claim %s/%s: %w", ns, v.Claim, err)
}

func (r *Reconciler) createDataDownload(ctx context.Context, rs *velerov1.Restore, rec backuprecord.Record, v backuprecord.Volume, ns string) error {
	timeout := rs.Spec.ItemOperationTimeout.Duration
	if timeout <= 0 {
		timeout = DefaultVolumeTimeout
	}
	no := false
	dd := &velerov2alpha1.DataDownload{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: rs.Namespace, Name: DataDownloadName(rs.Name, ns, v.Claim),
			Labels: map[string]string{velerov1.LabelRestoreName: rs.Name, velerov1.LabelRestoreUID: string(rs.UID),
				velerov1.LabelBackupName: rec.Name},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: velerov1.GroupVersion.String(), Kind: "Restore",
				Name: rs.Name, UID: rs.UID, Controller: &no, BlockOwnerDeletion: &no}},
		},
		Spec: velerov2alpha1.DataDownloadSpec{
			TargetVolume:          velerov2alpha1.TargetVolumeSpec{PVC: v.Claim, Namespace: ns},
			BackupStorageLocation: rec.StorageLocation,
			DataMover:             velerov2alpha1.DataMoverFerry,
			SnapshotID:            v.SnapshotID,
			SourceNamespace:       v.Namespace,
			OperationTimeout:      shared.Duration{Duration: timeout},
			SnapshotSize:          v.Bytes,
		},
	}
	if err := r.Client.Create(ctx, dd); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create DataDownload %s for claim %s/%s: %w", dd.Name, ns, v.Claim, err)
	}
	return nil
}

// toPod starts a PodVolumeRestore into the running pod that mounts the volume.
func (r *Reconciler) toPod(ctx context.Context, rs *velerov1.Restore, rec backuprecord.Record, v backuprecord.Volume) (string, string, error) {
	target, volumeName, err := r.targetPod(ctx, rs, v)
	if err != nil {
		return "", err.Error(), nil
	}
	return toPod, "", r.createPodVolumeRestore(ctx, rs, rec, v, target, volumeName)
}

// dataDownloads lists the restore's DataDownloads (not those of an older restore of the same name).
func (r *Reconciler) dataDownloads(ctx context.Context, rs *velerov1.Restore) ([]velerov2alpha1.DataDownload, error) {
	list := &velerov2alpha1.DataDownloadList{}
	if err := r.Client.List(ctx, list, client.InNamespace(rs.Namespace), client.MatchingLabels{velerov1.LabelRestoreName: rs.Name}); err != nil {
		return nil, err
	}
	return slices.DeleteFunc(list.Items, func(d velerov2alpha1.DataDownload) bool {
		return d.Labels[velerov1.LabelRestoreUID] != string(rs.UID)
	}), nil
}

func targetNamespace(rs *velerov1.Restore, ns string) string {
	if m, ok := rs.Spec.NamespaceMapping[ns]; ok {
		return m
	}
	return ns
}

// describe names a backed-up volume: its pod volume, or its claim when no pod was recorded.
func describe(v backuprecord.Volume) string {
	if v.Pod == "" {
		return fmt.Sprintf("%s claim %s", v.Namespace, v.Claim)
	}
	return fmt.Sprintf("%s/%s volume %s", v.Namespace, v.Pod, v.Volume)
}
