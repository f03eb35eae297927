// Package backupsync provides ferry-server's backup sync: every period it reads the backup
// records of each storage location (ReadOnly ones too: the disaster-recovery case) and makes
// the cluster's Backups match, as Velero does. A record without a Backup gets one, labelled with
// its location; a Completed Backup whose record is gone from its location is removed. Only
// Kubernetes objects are created or removed: sync never writes to a location.
package backupsync

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/backuprecord"
	"github.com/ferry-backup/ferry/internal/operation"
	"github.com/ferry-backup/ferry/internal/repoaccess"
	"github.com/ferry-backup/ferry/internal/repository"
)

// +kubebuilder:rbac:groups=velero.io,resources=backupstoragelocations,verbs=get;list;watch,namespace=velero
// +kubebuilder:rbac:groups=velero.io,resources=backups,verbs=get;list;watch;create;delete,namespace=velero
// +kubebuilder:rbac:groups=velero.io,resources=backups/status,verbs=get;patch;update,namespace=velero
// +kubebuilder:rbac:groups=velero.io,resources=deletebackuprequests,verbs=get;list;watch,namespace=velero
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch,namespace=velero

// DefaultPeriod is the sync period of a location whose spec.backupSyncPeriod is not set.
const DefaultPeriod = time.Minute

// Reconciler syncs the Backups of each location.
type Reconciler struct {
	Client       client.Client
	Recorder     record.EventRecorder
	Repositories *repoaccess.Access
	// Period applies to locations without spec.backupSyncPeriod; 0 disables their sync.
	Period time.Duration
}

// SetupWithManager registers the controller. Only a change of a location's spec starts a sync
// out of turn: status updates (validation) do not.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&velerov1.BackupStorageLocation{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Named("backupsync").Complete(r)
}

// Reconcile syncs one location and comes back after its period.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	bsl := &velerov1.BackupStorageLocation{}
	if err := r.Client.Get(ctx, req.NamespacedName, bsl); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	period := r.Period
	if d := bsl.Spec.BackupSyncPeriod; d != nil {
		if err := d.Err("spec.backupSyncPeriod"); err != nil {
			// Not synced until the spec is fixed (that change wakes this controller); the location
			// itself is Unavailable, saying why.
			log.FromContext(ctx).Info("backup sync skipped", "backupStorageLocation", bsl.Name, "reason", err.Error())
			r.Recorder.Event(bsl, corev1.EventTypeWarning, "BackupSyncSkipped", err.Error())
			return ctrl.Result{}, nil
		}
		period = d.Duration
	}
	if period <= 0 {
		return ctrl.Result{}, nil
	}
	if err := r.sync(ctx, bsl); err != nil {
		// The location's own validation reports an unreachable store; sync just tries again.
		log.FromContext(ctx).Info("backup sync failed; trying again next period", "backupStorageLocation", bsl.Name, "error", err.Error())
	}
	return ctrl.Result{RequeueAfter: period}, nil
}

// sync lists the cluster's Backups first, then the location's records: a Backup that completed
// before the listing has its record saved before it, so the record listing (which sees every
// write made before it began) cannot miss it.
func (r *Reconciler) sync(ctx context.Context, bsl *velerov1.BackupStorageLocation) error {
	backups := &velerov1.BackupList{}
	if err := r.Client.List(ctx, backups, client.InNamespace(bsl.Namespace)); err != nil {
		return err
	}
	deleting, err := r.beingDeleted(ctx, bsl.Namespace)
	if err != nil {
		return err
	}
	rep, release, err := r.Repositories.Open(ctx, bsl.Name, repoaccess.ForReading)
	if errors.Is(err, repository.ErrNotInitialized) {
		return nil // no repository, no backups; an empty location never removes Backups (a wrong prefix would)
	}
	if err != nil {
		return err
	}
	defer release()
	names, err := rep.RecordNames(ctx, backuprecord.Kind)
	if err != nil {
		return err
	}
	stored := map[string]bool{}
	for _, n := range names {
		stored[n] = true
	}
	inCluster := map[string]*velerov1.Backup{}
	for i := range backups.Items {
		inCluster[backups.Items[i].Name] = &backups.Items[i]
	}
	logger := log.FromContext(ctx).WithValues("backupStorageLocation", bsl.Name)
	for _, name := range names {
		b, ok := inCluster[name]
		switch {
		case deleting[name]:
		case !ok:
			if err := r.recreate(ctx, rep, bsl, name); err != nil {
				return err
			}
			logger.Info("backup synced from its location", "backup", name)
		case b.Annotations[velerov1.AnnotationSyncedFrom] == bsl.Name && b.Status.Phase == "":
			if err := r.recreate(ctx, rep, bsl, name); err != nil { // made, but its status not set
				return err
			}
		}
	}
	for _, b := range backups.Items {
		if stored[b.Name] || !inLocation(&b, bsl.Name) || b.Status.Phase != velerov1.BackupPhaseCompleted {
			continue
		}
		if err := r.Client.Delete(ctx, &b, client.Preconditions{UID: &b.UID}); client.IgnoreNotFound(err) != nil {
			return err
		}
		logger.Info("backup removed: its record is no longer in its location", "backup", b.Name)
		r.Recorder.Eventf(bsl, corev1.EventTypeNormal, "BackupRemoved", "Backup %s removed: its record is no longer in this location", b.Name)
	}
	return nil
}

// beingDeleted names the backups with a DeleteBackupRequest that has not ended, or ended
// without errors (its deletion may race this sync's listing): they are not recreated.
func (r *Reconciler) beingDeleted(ctx context.Context, namespace string) (map[string]bool, error) {
	list := &velerov1.DeleteBackupRequestList{}
	if err := r.Client.List(ctx, list, client.InNamespace(namespace)); err != nil {
		return nil, err
	}
	names := map[string]bool{}
	for _, d := range list.Items {
		if d.Status.Phase != velerov1.DeleteBackupRequestPhaseProcessed || len(d.Status.Errors) == 0 {
			names[d.Spec.BackupName] = true
		}
	}
	return names, nil
}

func inLocation(b *velerov1.Backup, location string) bool {
	return b.Spec.StorageLocation == location || b.Labels[velerov1.LabelStorageLocation] == location
}

// recreate makes the Backup of the record, or finishes one made before: its spec as it was
// backed up, its location, and the status that restore and describe need.
func (r *Reconciler) recreate(ctx context.Context, rep *repository.Repository, bsl *velerov1.BackupStorageLocation, name string) error {
	var rec backuprecord.Record
	if err := rep.LoadRecord(ctx, backuprecord.Kind, name, &rec); err != nil {
		if errors.Is(err, repository.ErrNoRecord) {
			return nil // deleted since the listing
		}
		return err
	}
	labels := maps.Clone(rec.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[velerov1.LabelStorageLocation] = bsl.Name
	b := &velerov1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: bsl.Namespace, Name: name, Labels: labels,
		Annotations: map[string]string{velerov1.AnnotationSyncedFrom: bsl.Name}}}
	if rec.Spec != nil {
		b.Spec = *rec.Spec.DeepCopy()
	}
	b.Spec.StorageLocation = bsl.Name
	err := r.Client.Create(ctx, b)
	if apierrors.IsAlreadyExists(err) {
		if err := r.Client.Get(ctx, client.ObjectKeyFromObject(b), b); err != nil {
			return err
		}
		if b.Annotations[velerov1.AnnotationSyncedFrom] != bsl.Name || b.Status.Phase != "" {
			return nil // someone else's
		}
	} else if err != nil {
		return fmt.Errorf("recreate backup %s: %w", name, err)
	}
	return operation.PatchStatus(ctx, r.Client, b, status(rec))
}

// status is the Backup status the record tells, with the volumes counted by the path that made
// their snapshots.
func status(rec backuprecord.Record) map[string]any {
	counts := velerov1.VolumeOperationCounts{Skipped: len(rec.Skipped)}
	var moves velerov1.VolumeOperationCounts
	for _, v := range rec.Volumes {
		c := &counts
		if v.DataPath() == backuprecord.PathDataMover {
			c = &moves
		}
		c.Total++
		switch velerov1.PodVolumePhase(v.Phase) {
		case velerov1.PodVolumePhaseCompleted:
			c.Completed++
		default:
			c.Failed++
		}
	}
	fields := map[string]any{"phase": rec.Phase, "formatVersion": "1.1.0", "podVolumeBackups": counts, "errors": counts.Failed + moves.Failed,
		"volumeSnapshotsAttempted": counts.Total + moves.Total, "volumeSnapshotsCompleted": counts.Completed + moves.Completed}
	if moves.Total > 0 {
		fields["dataUploads"] = moves
	}
	if !rec.Started.IsZero() {
		fields["startTimestamp"] = metav1.NewTime(rec.Started)
	}
	if !rec.Completed.IsZero() {
		fields["completionTimestamp"] = metav1.NewTime(rec.Completed.Truncate(time.Second))
	}
	if !rec.Expiration.IsZero() {
		fields["expiration"] = metav1.NewTime(rec.Expiration)
	}
	return fields
}
