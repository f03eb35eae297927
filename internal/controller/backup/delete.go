package backup

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/backuprecord"
	"github.com/ferry-backup/ferry/internal/repoaccess"
	"github.com/ferry-backup/ferry/internal/uploader"
)

// Finalizer keeps a deleted Backup until its snapshots and record are deleted from the
// repository. Their data is reclaimed by the next full maintenance after Kopia's safety margins.
const Finalizer = "ferry.io/delete-snapshots"

// addFinalizer makes sure deleting the Backup deletes its data too.
func (r *Reconciler) addFinalizer(ctx context.Context, b *velerov1.Backup) error {
	if controllerutil.ContainsFinalizer(b, Finalizer) {
		return nil
	}
	patch := client.MergeFrom(b.DeepCopy())
	controllerutil.AddFinalizer(b, Finalizer)
	return r.Client.Patch(ctx, b, patch)
}

// deleteData deletes the backup's snapshots and record, then lets the Backup go.
func (r *Reconciler) deleteData(ctx context.Context, b *velerov1.Backup) error {
	if !controllerutil.ContainsFinalizer(b, Finalizer) {
		return nil
	}
	pvbs := &velerov1.PodVolumeBackupList{}
	if err := r.Client.List(ctx, pvbs, client.InNamespace(b.Namespace), client.MatchingLabels{velerov1.LabelBackupName: b.Name}); err != nil {
		return err
	}
	byLocation := map[string][]string{}
	for _, p := range pvbs.Items {
		if p.Status.SnapshotID != "" {
			byLocation[p.Spec.BackupStorageLocation] = append(byLocation[p.Spec.BackupStorageLocation], p.Status.SnapshotID)
		}
	}
	if bsl, _ := r.location(ctx, b); bsl != nil {
		if _, ok := byLocation[bsl.Name]; !ok {
			byLocation[bsl.Name] = nil // the record, even without snapshots
		}
	}
	for loc, ids := range byLocation {
		if err := r.deleteFrom(ctx, loc, b.Name, ids); err != nil {
			r.Recorder.Eventf(b, corev1.EventTypeWarning, "DeleteFailed", "%v; retrying", err)
			return err
		}
	}
	patch := client.MergeFrom(b.DeepCopy())
	controllerutil.RemoveFinalizer(b, Finalizer)
	return r.Client.Patch(ctx, b, patch)
}

func (r *Reconciler) deleteFrom(ctx context.Context, location, backup string, ids []string) error {
	rep, release, err := r.Repositories.Open(ctx, location, repoaccess.ForBackup)
	if err != nil {
		return err
	}
	defer release()
	existing, err := uploader.List(ctx, rep, map[string]string{"backup": backup}, true)
	if err != nil {
		return err
	}
	known := map[string]bool{}
	for _, s := range existing {
		known[s.ID] = true
	}
	var gone []string
	for _, id := range ids {
		if known[id] {
			gone = append(gone, id)
		}
	}
	for _, s := range existing { // checkpoints of the backup's volumes too
		if s.Incomplete {
			gone = append(gone, s.ID)
		}
	}
	if len(gone) > 0 {
		if err := uploader.Delete(ctx, rep, gone...); err != nil {
			return fmt.Errorf("delete snapshots of backup %s: %w", backup, err)
		}
	}
	return rep.DeleteRecord(ctx, backuprecord.Kind, backup)
}
