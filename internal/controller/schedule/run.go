package schedule

import (
	"context"
	"fmt"
	"maps"
	"time"

	cron "github.com/robfig/cron/v3"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
)

// run creates the schedule's Backup for its time due, recording it in status.lastBackup. While
// an earlier Backup of the schedule has not ended, the run is skipped instead (status.lastSkipped,
// a Warning Event): the next run is at the next cron time, not when that Backup ends.
func (r *Reconciler) run(ctx context.Context, s *velerov1.Schedule, sched cron.Schedule, due time.Time, at metav1.Time) error {
	key := client.ObjectKey{Namespace: s.Namespace, Name: BackupName(s.Name, due)}
	existing := &velerov1.Backup{}
	err := r.Client.Get(ctx, key, existing)
	if err == nil {
		r.found(ctx, s, existing, due, at)
		return nil
	}
	if !apierrors.IsNotFound(err) {
		return err
	}
	running, err := r.running(ctx, s)
	if err != nil {
		return err
	}
	if running != "" {
		s.Status.LastSkipped = &at
		r.Recorder.Eventf(s, corev1.EventTypeWarning, "Skipped", "the run due at %s is skipped: Backup %s of this schedule has not ended; the next is at %s",
			due.Format(time.RFC3339), running, sched.Next(at.Time.UTC()).Format(time.RFC3339))
		log.FromContext(ctx).Info("scheduled run skipped", "schedule", s.Name, "due", due, "running", running)
		return nil
	}
	missed := ""
	if first := sched.Next(baseline(s)); first.Before(due) {
		missed = fmt.Sprintf(" (it stands for every run due since %s: they were missed while no server ran or the schedule was paused)", first.Format(time.RFC3339))
	}
	b := newBackup(s, key.Name)
	if err := r.Client.Create(ctx, b); apierrors.IsAlreadyExists(err) {
		// Created meanwhile and not yet in the cache: read it from there once it is.
		if err := r.Client.Get(ctx, key, existing); err != nil {
			return fmt.Errorf("backup %s exists: %w", key.Name, err)
		}
		r.found(ctx, s, existing, due, at)
		return nil
	} else if err != nil {
		return fmt.Errorf("create backup %s: %w", key.Name, err)
	}
	s.Status.LastBackup = &at
	r.Recorder.Eventf(s, corev1.EventTypeNormal, "BackupCreated", "Backup %s for the run due at %s%s", b.Name, due.Format(time.RFC3339), missed)
	log.FromContext(ctx).Info("scheduled backup created", "schedule", s.Name, "backup", b.Name, "due", due)
	return nil
}

// found handles a Backup that already has the name of the run due: made by an earlier pass
// whose status patch was lost (a crash, a conflict), it is this run's; someone else's name
// clash skips the run.
func (r *Reconciler) found(ctx context.Context, s *velerov1.Schedule, b *velerov1.Backup, due time.Time, at metav1.Time) {
	if b.Labels[velerov1.LabelScheduleName] != s.Name {
		s.Status.LastSkipped = &at
		r.Recorder.Eventf(s, corev1.EventTypeWarning, "Skipped", "the run due at %s is skipped: Backup %s exists and is not of this schedule (label %s)",
			due.Format(time.RFC3339), b.Name, velerov1.LabelScheduleName)
		log.FromContext(ctx).Info("scheduled run skipped", "schedule", s.Name, "due", due, "backup", b.Name, "reason", "name taken")
		return
	}
	s.Status.LastBackup = &at
	log.FromContext(ctx).Info("scheduled backup found", "schedule", s.Name, "backup", b.Name, "due", due)
}

// running names a Backup of the schedule that has not ended, or returns "".
func (r *Reconciler) running(ctx context.Context, s *velerov1.Schedule) (string, error) {
	list := &velerov1.BackupList{}
	if err := r.Client.List(ctx, list, client.InNamespace(s.Namespace), client.MatchingLabels{velerov1.LabelScheduleName: s.Name}); err != nil {
		return "", err
	}
	name := ""
	for i := range list.Items {
		if b := &list.Items[i]; !ended(b) && (name == "" || b.Name < name) {
			name = b.Name
		}
	}
	return name, nil
}

// ended tells whether a Backup will do no more work: it reached a final phase, a
// DeleteBackupRequest took it over, it is being deleted, or backup sync made it.
func ended(b *velerov1.Backup) bool {
	if !b.DeletionTimestamp.IsZero() {
		return true
	}
	if _, synced := b.Annotations[velerov1.AnnotationSyncedFrom]; synced {
		return true
	}
	switch b.Status.Phase {
	case velerov1.BackupPhaseCompleted, velerov1.BackupPhasePartiallyFailed, velerov1.BackupPhaseFailed,
		velerov1.BackupPhaseFailedValidation, velerov1.BackupPhaseDeleting:
		return true
	}
	return false
}

// newBackup is the Backup of one run: the template's spec (its ttl included, which the Backup
// controller turns into status.expiration), the template's labels plus velero.io/schedule-name,
// and, with useOwnerReferencesInBackup, the schedule as its controller (as Velero sets it: not
// blocking the schedule's deletion).
func newBackup(s *velerov1.Schedule, name string) *velerov1.Backup {
	labels := maps.Clone(s.Spec.Template.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[velerov1.LabelScheduleName] = s.Name
	b := &velerov1.Backup{
		ObjectMeta: metav1.ObjectMeta{Namespace: s.Namespace, Name: name, Labels: labels},
		Spec:       *s.Spec.Template.DeepCopy(),
	}
	if ptr.Deref(s.Spec.UseOwnerReferencesInBackup, false) {
		b.OwnerReferences = []metav1.OwnerReference{{
			APIVersion: velerov1.GroupVersion.String(), Kind: "Schedule", Name: s.Name, UID: s.UID, Controller: ptr.To(true),
		}}
	}
	return b
}
