package backup

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/backuprecord"
	"github.com/ferry-backup/ferry/internal/operation"
	"github.com/ferry-backup/ferry/internal/repoaccess"
)

// progress sums up the PodVolumeBackups; once all have ended it stores the record and ends the
// backup.
func (r *Reconciler) progress(ctx context.Context, b *velerov1.Backup) (ctrl.Result, error) {
	pvbs := &velerov1.PodVolumeBackupList{}
	if err := r.Client.List(ctx, pvbs, client.InNamespace(b.Namespace), client.MatchingLabels{velerov1.LabelBackupName: b.Name}); err != nil {
		return ctrl.Result{}, err
	}
	phases := make([]velerov1.PodVolumePhase, len(pvbs.Items))
	var incomplete, notPreserved []string
	for i, p := range pvbs.Items {
		phases[i] = p.Status.Phase
		incomplete = appendCondition(incomplete, p, velerov1.ConditionEntriesNotBackedUp)
		notPreserved = appendCondition(notPreserved, p, velerov1.ConditionMetadataNotPreserved)
	}
	counts, done := operation.Tally(phases)
	if prev := b.Status.PodVolumeBackups; prev != nil {
		counts.Skipped = prev.Skipped
		if prev.Total > counts.Total {
			done = false // not every PodVolumeBackup is in the cache yet
		}
	}
	if !done {
		return ctrl.Result{}, operation.PatchStatus(ctx, r.Client, b, map[string]any{"podVolumeBackups": counts})
	}
	phase := velerov1.BackupPhaseCompleted
	reason := ""
	switch {
	case counts.Failed > 0 && counts.Completed == 0:
		phase, reason = velerov1.BackupPhaseFailed, "every volume backup failed"
	case counts.Failed > 0 || len(incomplete) > 0:
		// Nothing is lost silently: a volume whose snapshot lacks entries makes the backup partial.
		phase, reason = velerov1.BackupPhasePartiallyFailed, strings.Join(incomplete, "; ")
	}
	rec := r.record(ctx, b, pvbs.Items, phase)
	if err := r.saveRecord(ctx, b, rec); err != nil {
		return ctrl.Result{}, fmt.Errorf("store the record of backup %s: %w", b.Name, err)
	}
	note := ""
	if len(notPreserved) > 0 {
		note = fmt.Sprintf("; metadata not preserved in %d volumes (condition %s)", len(notPreserved), velerov1.ConditionMetadataNotPreserved)
	}
	r.Recorder.Eventf(b, eventType(phase), string(phase), "%d of %d volumes backed up, %d failed, %d skipped%s",
		counts.Completed, counts.Total, counts.Failed, counts.Skipped, note)
	log.FromContext(ctx).Info("backup ended", "backup", b.Name, "phase", phase, "volumes", counts.Total,
		"completed", counts.Completed, "failed", counts.Failed, "skipped", counts.Skipped, "metadataNotPreserved", len(notPreserved))
	fields := map[string]any{
		"phase": phase, "podVolumeBackups": counts, "errors": counts.Failed, "failureReason": reason,
		"completionTimestamp": r.now(), "volumeSnapshotsAttempted": counts.Total, "volumeSnapshotsCompleted": counts.Completed,
	}
	if len(notPreserved) > 0 {
		// Content kept, some metadata not: warnings, not a partial backup.
		msg := strings.Join(notPreserved[:min(len(notPreserved), maxVolumesNamed)], "; ")
		if len(notPreserved) > maxVolumesNamed {
			msg += fmt.Sprintf("; and %d more volumes", len(notPreserved)-maxVolumesNamed)
		}
		conditions := append([]metav1.Condition(nil), b.Status.Conditions...)
		meta.SetStatusCondition(&conditions, metav1.Condition{Type: velerov1.ConditionMetadataNotPreserved, Status: metav1.ConditionTrue,
			Reason: "LinksAttributesOrNames", LastTransitionTime: r.now(), Message: msg})
		fields["conditions"], fields["warnings"] = conditions, len(notPreserved)
	}
	return ctrl.Result{}, operation.PatchStatus(ctx, r.Client, b, fields)
}

// maxVolumesNamed bounds the volumes a Backup's MetadataNotPreserved condition names (a
// condition's message holds at most 32 KiB).
const maxVolumesNamed = 5

// appendCondition adds to found the message of p's condition of type kind, when p Completed
// with it, prefixed with the volume.
func appendCondition(found []string, p velerov1.PodVolumeBackup, kind string) []string {
	c := meta.FindStatusCondition(p.Status.Conditions, kind)
	if c == nil || c.Status != metav1.ConditionTrue || p.Status.Phase != velerov1.PodVolumePhaseCompleted {
		return found
	}
	return append(found, fmt.Sprintf("%s/%s volume %s: %s", p.Spec.Pod.Namespace, p.Spec.Pod.Name, p.Spec.Volume, c.Message))
}

func eventType(phase velerov1.BackupPhase) string {
	if phase == velerov1.BackupPhaseCompleted {
		return corev1.EventTypeNormal
	}
	return corev1.EventTypeWarning
}

// record describes the backup for the repository, with each claim's spec.
func (r *Reconciler) record(ctx context.Context, b *velerov1.Backup, pvbs []velerov1.PodVolumeBackup, phase velerov1.BackupPhase) backuprecord.Record {
	rec := backuprecord.Record{Name: b.Name, UID: string(b.UID), StorageLocation: b.Spec.StorageLocation,
		Phase: string(phase), Completed: r.Clock.Now().UTC(), Spec: b.Spec.DeepCopy()}
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
			Claim: p.Spec.Tags["pvc"], Node: p.Spec.Node, SnapshotID: p.Status.SnapshotID, Phase: string(p.Status.Phase),
			Message: p.Status.Message, Bytes: p.Status.Progress.TotalBytes, Files: p.Status.Progress.TotalFiles}
		if rec.StorageLocation == "" {
			rec.StorageLocation = p.Spec.BackupStorageLocation
		}
		if v.Claim != "" {
			pvc := &corev1.PersistentVolumeClaim{}
			if err := r.Cluster.Get(ctx, client.ObjectKey{Namespace: v.Namespace, Name: v.Claim}, pvc); err == nil {
				v.ClaimSpec = pvc.Spec.DeepCopy()
			}
		}
		rec.Volumes = append(rec.Volumes, v)
	}
	return rec
}

func (r *Reconciler) saveRecord(ctx context.Context, b *velerov1.Backup, rec backuprecord.Record) error {
	if rec.StorageLocation == "" {
		bsl, err := r.location(ctx, b)
		if err != nil || bsl == nil {
			return fmt.Errorf("find the storage location: %v", err)
		}
		rec.StorageLocation = bsl.Name
	}
	rep, release, err := r.Repositories.Open(ctx, rec.StorageLocation, repoaccess.ForBackup)
	if err != nil {
		return err
	}
	defer release()
	return rep.SaveRecord(ctx, backuprecord.Kind, b.Name, rec)
}
