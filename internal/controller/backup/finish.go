package backup

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	velerov2alpha1 "github.com/ferry-backup/ferry/api/v2alpha1"
	"github.com/ferry-backup/ferry/internal/backuprecord"
	"github.com/ferry-backup/ferry/internal/onchange"
	"github.com/ferry-backup/ferry/internal/operation"
	"github.com/ferry-backup/ferry/internal/repoaccess"
)

// progress sums up the PodVolumeBackups and DataUploads; once all have ended it stores the
// record and ends the backup.
func (r *Reconciler) progress(ctx context.Context, b *velerov1.Backup) (ctrl.Result, error) {
	pvbs := &velerov1.PodVolumeBackupList{}
	if err := r.Client.List(ctx, pvbs, client.InNamespace(b.Namespace), client.MatchingLabels{velerov1.LabelBackupName: b.Name}); err != nil {
		return ctrl.Result{}, err
	}
	dus, err := r.dataUploads(ctx, b)
	if err != nil {
		return ctrl.Result{}, err
	}
	phases := make([]velerov1.PodVolumePhase, len(pvbs.Items))
	var incomplete, notPreserved, failures []string
	for i, p := range pvbs.Items {
		phases[i] = p.Status.Phase
		where := fmt.Sprintf("%s/%s volume %s", p.Spec.Pod.Namespace, p.Spec.Pod.Name, p.Spec.Volume)
		incomplete = appendCondition(incomplete, where, p.Status.Phase == velerov1.PodVolumePhaseCompleted, p.Status.Conditions, velerov1.ConditionEntriesNotBackedUp)
		notPreserved = appendCondition(notPreserved, where, p.Status.Phase == velerov1.PodVolumePhaseCompleted, p.Status.Conditions, velerov1.ConditionMetadataNotPreserved)
		if p.Status.Phase == velerov1.PodVolumePhaseFailed || p.Status.Phase == velerov1.PodVolumePhaseCanceled {
			failures = append(failures, fmt.Sprintf("%s: %s %s", where, p.Status.Phase, p.Status.Message))
		}
	}
	for _, d := range dus {
		where := fmt.Sprintf("claim %s/%s (DataUpload %s)", d.Spec.SourceNamespace, d.Spec.SourcePVC, d.Name)
		incomplete = appendCondition(incomplete, where, d.Status.Phase == velerov2alpha1.DataMovePhaseCompleted, d.Status.Conditions, velerov1.ConditionEntriesNotBackedUp)
	}
	counts, done := operation.Tally(phases)
	moves, movesDone := tallyDataUploads(dus, &failures)
	behind := false // not every PodVolumeBackup or DataUpload start made is in the cache yet
	if prev := b.Status.PodVolumeBackups; prev != nil {
		counts.Skipped = prev.Skipped
		behind = prev.Total > counts.Total
	}
	if prev := b.Status.DataUploads; prev != nil && prev.Total > moves.Total {
		behind = true
	}
	if behind {
		// Summing up now would write a total that shrinks and grows back, one patch each; the
		// missing objects' arrival in the cache brings the Backup back.
		return ctrl.Result{}, nil
	}
	if !done || !movesDone {
		fields := progressFields(counts, moves)
		if same, err := onchange.StatusHolds(b, fields); same || err != nil {
			return ctrl.Result{}, err
		}
		return ctrl.Result{}, operation.PatchStatus(ctx, r.Client, b, fields)
	}
	all := velerov1.VolumeOperationCounts{Total: counts.Total + moves.Total, Completed: counts.Completed + moves.Completed,
		Failed: counts.Failed + moves.Failed, Skipped: counts.Skipped}
	phase := velerov1.BackupPhaseCompleted
	reason := ""
	switch {
	case all.Failed > 0 && all.Completed == 0:
		phase, reason = velerov1.BackupPhaseFailed, "every volume backup failed: "+operation.JoinFirst(failures, 5)
	case all.Failed > 0 || len(incomplete) > 0:
		// Nothing is lost silently: a volume whose snapshot lacks entries makes the backup partial.
		phase, reason = velerov1.BackupPhasePartiallyFailed, operation.JoinFirst(append(failures, incomplete...), 10)
	}
	if b.Spec.SnapshotMoveData != nil && *b.Spec.SnapshotMoveData {
		if err := r.deleteOrphanSnapshots(ctx, b, dus); err != nil {
			return ctrl.Result{}, err
		}
	}
	rec := r.record(ctx, b, pvbs.Items, dus, phase)
	if err := r.saveRecord(ctx, b, rec); err != nil {
		return ctrl.Result{}, fmt.Errorf("store the record of backup %s: %w", b.Name, err)
	}
	note := ""
	if len(notPreserved) > 0 {
		note = fmt.Sprintf("; metadata not preserved in %d volumes (condition %s)", len(notPreserved), velerov1.ConditionMetadataNotPreserved)
	}
	r.Recorder.Eventf(b, eventType(phase), string(phase), "%d of %d volumes backed up, %d failed, %d skipped%s",
		all.Completed, all.Total, all.Failed, all.Skipped, note)
	log.FromContext(ctx).Info("backup ended", "backup", b.Name, "phase", phase, "volumes", all.Total,
		"completed", all.Completed, "failed", all.Failed, "skipped", all.Skipped, "dataUploads", moves.Total,
		"metadataNotPreserved", len(notPreserved))
	fields := progressFields(counts, moves)
	for k, v := range map[string]any{"phase": phase, "errors": all.Failed, "failureReason": reason, "completionTimestamp": r.now(),
		"volumeSnapshotsAttempted": all.Total, "volumeSnapshotsCompleted": all.Completed} {
		fields[k] = v
	}
	if len(notPreserved) > 0 {
		// Content kept, some metadata not: warnings, not a partial backup.
		msg := operation.JoinFirst(notPreserved, maxVolumesNamed)
		conditions := append([]metav1.Condition(nil), b.Status.Conditions...)
		meta.SetStatusCondition(&conditions, metav1.Condition{Type: velerov1.ConditionMetadataNotPreserved, Status: metav1.ConditionTrue,
			Reason: "LinksAttributesOrNames", LastTransitionTime: r.now(), Message: msg})
		fields["conditions"], fields["warnings"] = conditions, len(notPreserved)
	}
	return ctrl.Result{}, operation.PatchStatus(ctx, r.Client, b, fields)
}

// tallyDataUploads counts DataUploads by outcome, like operation.Tally (the phases' values are
// the same), and adds the failed ones to failures.
func tallyDataUploads(dus []velerov2alpha1.DataUpload, failures *[]string) (velerov1.VolumeOperationCounts, bool) {
	phases := make([]velerov1.PodVolumePhase, len(dus))
	for i, d := range dus {
		phases[i] = velerov1.PodVolumePhase(d.Status.Phase)
		if d.Status.Phase == velerov2alpha1.DataMovePhaseFailed || d.Status.Phase == velerov2alpha1.DataMovePhaseCanceled {
			*failures = append(*failures, fmt.Sprintf("claim %s/%s (DataUpload %s): %s %s",
				d.Spec.SourceNamespace, d.Spec.SourcePVC, d.Name, d.Status.Phase, d.Status.Message))
		}
	}
	return operation.Tally(phases)
}

// progressFields are the status counts of both paths: podVolumeBackups and dataUploads, Velero's
// backupItemOperations (its DataUploads are item operations) and progress over all volumes.
func progressFields(counts, moves velerov1.VolumeOperationCounts) map[string]any {
	fields := map[string]any{"podVolumeBackups": counts,
		"progress": velerov1.BackupProgress{TotalItems: counts.Total + moves.Total, ItemsBackedUp: counts.Completed + moves.Completed}}
	if moves.Total > 0 {
		fields["dataUploads"] = moves
		fields["backupItemOperationsAttempted"] = moves.Total
		fields["backupItemOperationsCompleted"] = moves.Completed
		fields["backupItemOperationsFailed"] = moves.Failed
	}
	return fields
}

// maxVolumesNamed bounds the volumes a Backup's MetadataNotPreserved condition names (a
// condition's message holds at most 32 KiB).
const maxVolumesNamed = 5

// appendCondition adds to found the message of a completed operation's condition of type kind,
// prefixed with where.
func appendCondition(found []string, where string, completed bool, conditions []metav1.Condition, kind string) []string {
	c := meta.FindStatusCondition(conditions, kind)
	if c == nil || c.Status != metav1.ConditionTrue || !completed {
		return found
	}
	return append(found, where+": "+c.Message)
}

func eventType(phase velerov1.BackupPhase) string {
	if phase == velerov1.BackupPhaseCompleted {
		return corev1.EventTypeNormal
	}
	return corev1.EventTypeWarning
}

// record describes the backup for the repository, with which path made each snapshot and each
// claim's spec.
func (r *Reconciler) record(ctx context.Context, b *velerov1.Backup, pvbs []velerov1.PodVolumeBackup, dus []velerov2alpha1.DataUpload,
	phase velerov1.BackupPhase) backuprecord.Record {
	rec := backuprecord.Record{Name: b.Name, UID: string(b.UID), StorageLocation: b.Spec.StorageLocation,
		Phase: string(phase), Completed: r.Clock.Now().UTC(), Spec: b.Spec.DeepCopy(), Labels: b.Labels}
	if b.Status.Expiration != nil {
		rec.Expiration = b.Status.Expiration.UTC()
	}
	if b.Status.StartTimestamp != nil {
		rec.Started = b.Status.StartTimestamp.UTC()
	}
	for _, c := range b.Status.Conditions {
		if c.Type == "VolumesSkipped" {
			rec.Skipped = append(rec.Skipped, c.Message)
		}
	}
	for _, p := range pvbs {
		v := backuprecord.Volume{Namespace: p.Spec.Pod.Namespace, Pod: p.Spec.Pod.Name, Volume: p.Spec.Volume,
			Claim: p.Spec.Tags["pvc"], Path: backuprecord.PathPodVolume, Node: p.Spec.Node, SnapshotID: p.Status.SnapshotID,
			Phase: string(p.Status.Phase), Message: p.Status.Message, Bytes: p.Status.Progress.TotalBytes, Files: p.Status.Progress.TotalFiles}
		if rec.StorageLocation == "" {
			rec.StorageLocation = p.Spec.BackupStorageLocation
		}
		v.ClaimSpec = r.claimSpec(ctx, v.Namespace, v.Claim)
		rec.Volumes = append(rec.Volumes, v)
	}
	for _, d := range dus {
		v := backuprecord.Volume{Namespace: d.Spec.SourceNamespace, Claim: d.Spec.SourcePVC, Path: backuprecord.PathDataMover,
			Node: d.Status.Node, SnapshotID: d.Status.SnapshotID, Phase: string(d.Status.Phase), Message: d.Status.Message,
			Bytes: d.Status.Progress.TotalBytes, Files: d.Status.Progress.TotalFiles}
		if rec.StorageLocation == "" {
			rec.StorageLocation = d.Spec.BackupStorageLocation
		}
		v.ClaimSpec = r.claimSpec(ctx, v.Namespace, v.Claim)
		rec.Volumes = append(rec.Volumes, v)
	}
	return rec
}

// claimSpec is the claim's spec, or nil when there is no claim (or it is gone).
func (r *Reconciler) claimSpec(ctx context.Context, namespace, name string) *corev1.PersistentVolumeClaimSpec {
	if name == "" {
		return nil
	}
	pvc := &corev1.PersistentVolumeClaim{}
	if err := r.Cluster.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, pvc); err != nil {
		return nil
	}
	return pvc.Spec.DeepCopy()
}

func (r *Reconciler) saveRecord(ctx context.Context, b *velerov1.Backup, rec backuprecord.Record) error {
	if rec.StorageLocation == "" {
		bsl, err := r.location(ctx, b)
		if err != nil || bsl == nil {
			return fmt.Errorf("find the storage location: %v", err)
		}
		rec.StorageLocation = bsl.Name
	}
	if err := r.recordRepositories(ctx, b.Namespace, rec); err != nil {
		return err
	}
	rep, release, err := r.Repositories.Open(ctx, rec.StorageLocation, repoaccess.ForBackup)
	if err != nil {
		return err
	}
	defer release()
	return rep.SaveRecord(ctx, backuprecord.Kind, b.Name, rec)
}

// recordRepositories says in the record which repository holds each volume's snapshot: the
// namespace's own in Velero's layout.
func (r *Reconciler) recordRepositories(ctx context.Context, namespace string, rec backuprecord.Record) error {
	bsl := &velerov1.BackupStorageLocation{}
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: rec.StorageLocation}, bsl); err != nil {
		return fmt.Errorf("read backup storage location %s: %w", rec.StorageLocation, err)
	}
	for i, v := range rec.Volumes {
		layout, err := repoaccess.LayoutOf(ctx, r.Client, bsl, v.Namespace)
		if err != nil {
			return err
		}
		if layout == repoaccess.LayoutVelero {
			rec.Volumes[i].RepositoryNamespace = v.Namespace
		}
	}
	return nil
}
