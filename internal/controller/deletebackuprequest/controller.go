// Package deletebackuprequest provides ferry-server's DeleteBackupRequest controller: the one
// way a backup's data is deleted. A request stops the backup if it still runs, deletes its
// snapshots and record from the repository, then the Backup object; it ends Processed, with
// errors naming what could not be done. Deleting a Backup object alone never deletes data.
package deletebackuprequest

import (
	"context"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	velerov2alpha1 "github.com/ferry-backup/ferry/api/v2alpha1"
	"github.com/ferry-backup/ferry/internal/operation"
	"github.com/ferry-backup/ferry/internal/repoaccess"
)

// +kubebuilder:rbac:groups=velero.io,resources=deletebackuprequests,verbs=get;list;watch;patch;delete,namespace=velero
// +kubebuilder:rbac:groups=velero.io,resources=deletebackuprequests/status,verbs=get;patch;update,namespace=velero
// +kubebuilder:rbac:groups=velero.io,resources=backups,verbs=get;list;watch;patch;delete,namespace=velero
// +kubebuilder:rbac:groups=velero.io,resources=backups/status,verbs=get;patch;update,namespace=velero
// +kubebuilder:rbac:groups=velero.io,resources=podvolumebackups,verbs=get;list;watch;patch,namespace=velero
// +kubebuilder:rbac:groups=velero.io,resources=podvolumebackups/status,verbs=get;patch;update,namespace=velero
// +kubebuilder:rbac:groups=velero.io,resources=datauploads,verbs=get;list;watch;patch,namespace=velero
// +kubebuilder:rbac:groups=velero.io,resources=datauploads/status,verbs=get;patch;update,namespace=velero
// +kubebuilder:rbac:groups=velero.io,resources=backupstoragelocations,verbs=get;list;watch,namespace=velero
// +kubebuilder:rbac:groups=velero.io,resources=backuprepositories,verbs=get;list;watch,namespace=velero
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch,namespace=velero

// Defaults.
const (
	// KeepProcessed is how long a processed request stays before it is deleted (Velero's 24 h).
	KeepProcessed = 24 * time.Hour
	// AcceptGrace is how long a canceled PodVolumeBackup that no node-agent ever accepted
	// (its node has none) may wait before the server ends it itself.
	AcceptGrace = time.Minute
	// StopLimit bounds the wait for a running backup's operations to stop.
	StopLimit = 10 * time.Minute
	// DeleteLimit bounds the deletion from one repository.
	DeleteLimit = 10 * time.Minute
	recheck     = 30 * time.Second
)

// AnnotationPreviousPhase keeps the backup's phase from before the request, to put it back when
// nothing could be deleted.
const AnnotationPreviousPhase = "ferry.io/backup-phase"

// Reconciler processes DeleteBackupRequests.
type Reconciler struct {
	Client       client.Client
	Recorder     record.EventRecorder
	Clock        clock.PassiveClock
	Repositories *repoaccess.Access
}

// SetupWithManager registers the controller; a change to one of the backup's
// PodVolumeBackups or DataUploads wakes the requests for that backup.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).For(&velerov1.DeleteBackupRequest{}).
		Watches(&velerov1.PodVolumeBackup{}, handler.EnqueueRequestsFromMapFunc(r.requestsOfBackup)).
		Watches(&velerov2alpha1.DataUpload{}, handler.EnqueueRequestsFromMapFunc(r.requestsOfBackup)).
		Named("deletebackuprequest").Complete(r)
}

func (r *Reconciler) requestsOfBackup(ctx context.Context, obj client.Object) []reconcile.Request {
	name := obj.GetLabels()[velerov1.LabelBackupName]
	if name == "" {
		return nil
	}
	list := &velerov1.DeleteBackupRequestList{}
	if err := r.Client.List(ctx, list, client.InNamespace(obj.GetNamespace()), client.MatchingLabels{velerov1.LabelBackupName: name}); err != nil {
		return nil
	}
	var reqs []reconcile.Request
	for _, d := range list.Items {
		if d.Status.Phase == velerov1.DeleteBackupRequestPhaseInProgress {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&d)})
		}
	}
	return reqs
}

// Reconcile: New → (checks) → InProgress → (the backup stopped, its data deleted) → Processed →
// deleted after KeepProcessed.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	dbr := &velerov1.DeleteBackupRequest{}
	if err := r.Client.Get(ctx, req.NamespacedName, dbr); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	switch dbr.Status.Phase {
	case velerov1.DeleteBackupRequestPhaseProcessed:
		if left := dbr.CreationTimestamp.Add(KeepProcessed).Sub(r.Clock.Now()); left > 0 {
			return ctrl.Result{RequeueAfter: left}, nil
		}
		return ctrl.Result{}, client.IgnoreNotFound(r.Client.Delete(ctx, dbr))
	case velerov1.DeleteBackupRequestPhaseInProgress:
		return r.process(ctx, dbr)
	}
	return ctrl.Result{}, r.accept(ctx, dbr)
}

// accept checks that the backup and its location allow deletion, then marks the backup
// Deleting (so that it neither progresses nor restores) and the request InProgress.
func (r *Reconciler) accept(ctx context.Context, dbr *velerov1.DeleteBackupRequest) error {
	b := &velerov1.Backup{}
	err := r.Client.Get(ctx, client.ObjectKey{Namespace: dbr.Namespace, Name: dbr.Spec.BackupName}, b)
	if apierrors.IsNotFound(err) {
		return r.finish(ctx, dbr, nil, fmt.Sprintf("spec.backupName: backup %s not found in namespace %s; nothing was deleted "+
			"(a Backup object deleted with kubectl keeps its data: backup sync brings it back from its location, then ask again)",
			dbr.Spec.BackupName, dbr.Namespace))
	}
	if err != nil {
		return err
	}
	if written, err := r.wroteAnything(ctx, b); err != nil {
		return err
	} else if !written {
		// Never started (a mistyped location, say): nothing of it is in any store.
		if err := r.deleteBackup(ctx, b); err != nil {
			return err
		}
		r.Recorder.Eventf(dbr, corev1.EventTypeNormal, "Deleted", "backup %s never started (%s): nothing of it is in storage; its object is deleted",
			b.Name, b.Status.Phase)
		return r.finish(ctx, dbr, b)
	}
	location, err := r.locationOf(ctx, b)
	if err != nil {
		return err
	}
	if problem, err := r.checkLocation(ctx, b, location); err != nil || problem != "" {
		if err != nil {
			return err
		}
		return r.finish(ctx, dbr, b, problem)
	}
	previous := string(b.Status.Phase)
	if b.Status.Phase == velerov1.BackupPhaseDeleting {
		previous = dbr.Annotations[AnnotationPreviousPhase] // resumed after a restart, or asked again
	}
	patch := client.MergeFrom(dbr.DeepCopy())
	metav1.SetMetaDataLabel(&dbr.ObjectMeta, velerov1.LabelBackupName, b.Name)
	metav1.SetMetaDataLabel(&dbr.ObjectMeta, velerov1.LabelBackupUID, string(b.UID))
	metav1.SetMetaDataAnnotation(&dbr.ObjectMeta, AnnotationPreviousPhase, previous)
	if err := r.Client.Patch(ctx, dbr, patch); err != nil {
		return err
	}
	if err := r.markDeleting(ctx, b); err != nil {
		return err
	}
	log.FromContext(ctx).Info("backup deletion started", "backup", b.Name, "deleteBackupRequest", dbr.Name, "backupStorageLocation", location)
	r.Recorder.Eventf(dbr, corev1.EventTypeNormal, "Accepted", "deleting backup %s (was %s) from %s", b.Name, previous, location)
	return operation.PatchStatus(ctx, r.Client, dbr, map[string]any{"phase": velerov1.DeleteBackupRequestPhaseInProgress})
}

// locationOf names the backup's location: its spec, the label backup sync sets, its
// PodVolumeBackups (backups of older versions left the spec empty), else the default location.
func (r *Reconciler) locationOf(ctx context.Context, b *velerov1.Backup) (string, error) {
	if b.Spec.StorageLocation != "" {
		return b.Spec.StorageLocation, nil
	}
	if l := b.Labels[velerov1.LabelStorageLocation]; l != "" {
		return l, nil
	}
	pvbs, err := r.podVolumeBackups(ctx, b)
	if err != nil {
		return "", err
	}
	for _, p := range pvbs {
		if p.Spec.BackupStorageLocation != "" {
			return p.Spec.BackupStorageLocation, nil
		}
	}
	list := &velerov1.BackupStorageLocationList{}
	if err := r.Client.List(ctx, list, client.InNamespace(b.Namespace)); err != nil {
		return "", err
	}
	for _, l := range list.Items {
		if l.Spec.Default || len(list.Items) == 1 {
			return l.Name, nil
		}
	}
	return "", nil
}

// wroteAnything reports whether the backup may have written to a store: it started, or made
// PodVolumeBackups or DataUploads (a start cut short before its status was written).
func (r *Reconciler) wroteAnything(ctx context.Context, b *velerov1.Backup) (bool, error) {
	if b.Status.StartTimestamp != nil || b.Status.Phase == velerov1.BackupPhaseInProgress || b.Status.Phase == velerov1.BackupPhaseDeleting {
		return true, nil
	}
	if _, synced := b.Annotations[velerov1.AnnotationSyncedFrom]; synced {
		return true, nil
	}
	pvbs, err := r.podVolumeBackups(ctx, b)
	if err != nil || len(pvbs) > 0 {
		return len(pvbs) > 0, err
	}
	dus, err := r.dataUploads(ctx, b)
	return len(dus) > 0, err
}

// checkLocation says why the backup's data cannot be deleted from location, or "". A location
// that is gone does not keep the Backup object: it is deleted, and the problem says what stays
// in the store and how to reclaim it. A ReadOnly location keeps everything, object included
// (backup sync would bring it back anyway).
func (r *Reconciler) checkLocation(ctx context.Context, b *velerov1.Backup, location string) (string, error) {
	bsl := &velerov1.BackupStorageLocation{}
	if location != "" {
		err := r.Client.Get(ctx, client.ObjectKey{Namespace: b.Namespace, Name: location}, bsl)
		if err != nil && !apierrors.IsNotFound(err) {
			return "", err
		}
		if err == nil {
			if bsl.Spec.AccessMode == velerov1.BackupStorageLocationAccessModeReadOnly {
				return fmt.Sprintf("backup storage location %s of backup %s is ReadOnly; nothing was deleted "+
					"(set its accessMode to ReadWrite, then ask again)", location, b.Name), nil
			}
			return "", nil
		}
	}
	where := fmt.Sprintf("backup storage location %s of backup %s: not found", location, b.Name)
	if location == "" {
		where = fmt.Sprintf("backup %s names no storage location and there is no default one", b.Name)
	}
	if err := r.deleteBackup(ctx, b); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s; the Backup object is deleted, but its snapshots and record stay in that store: to reclaim them, "+
		"create the location again (backup sync brings the Backup back) and delete the backup again", where), nil
}

// markDeleting sets the backup's phase to Deleting.
func (r *Reconciler) markDeleting(ctx context.Context, b *velerov1.Backup) error {
	if b.Status.Phase == velerov1.BackupPhaseDeleting {
		return nil
	}
	return operation.PatchStatus(ctx, r.Client, b, map[string]any{"phase": velerov1.BackupPhaseDeleting})
}

// process stops the backup's operations, then deletes its data and the Backup object.
func (r *Reconciler) process(ctx context.Context, dbr *velerov1.DeleteBackupRequest) (ctrl.Result, error) {
	b := &velerov1.Backup{}
	err := r.Client.Get(ctx, client.ObjectKey{Namespace: dbr.Namespace, Name: dbr.Spec.BackupName}, b)
	if apierrors.IsNotFound(err) || (err == nil && string(b.UID) != dbr.Labels[velerov1.LabelBackupUID]) {
		// Deleted, by this request before a restart or by hand, or replaced by another backup of
		// the same name: this request is done either way.
		return ctrl.Result{}, r.finish(ctx, dbr, nil)
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	if err := r.markDeleting(ctx, b); err != nil { // a racing backup controller may have moved it on
		return ctrl.Result{}, err
	}
	pvbs, err := r.podVolumeBackups(ctx, b)
	if err != nil {
		return ctrl.Result{}, err
	}
	running, err := r.stop(ctx, dbr, pvbs)
	if err != nil {
		return ctrl.Result{}, err
	}
	dus, err := r.dataUploads(ctx, b)
	if err != nil {
		return ctrl.Result{}, err
	}
	moving, err := r.stopDataUploads(ctx, dbr, dus)
	if err != nil {
		return ctrl.Result{}, err
	}
	running = append(running, moving...)
	waited := r.Clock.Since(dbr.CreationTimestamp.Time)
	if len(running) > 0 && waited < StopLimit {
		return ctrl.Result{RequeueAfter: recheck}, nil // their changes wake this request sooner
	}
	var problems []string
	if len(running) > 0 {
		problems = append(problems, fmt.Sprintf("still running after %s, their snapshots (if they complete) are not deleted: %s",
			StopLimit, operation.JoinFirst(running, 5)))
	}
	location, err := r.locationOf(ctx, b)
	if err != nil {
		return ctrl.Result{}, err
	}
	if problem, err := r.checkLocation(ctx, b, location); err != nil || problem != "" {
		if err != nil {
			return ctrl.Result{}, err
		}
		return ctrl.Result{}, r.undo(ctx, dbr, b, append(problems, problem))
	}
	owned := map[string]bool{}
	for _, p := range pvbs {
		owned[p.Status.SnapshotID] = true
	}
	for _, d := range dus {
		owned[d.Status.SnapshotID] = true
	}
	delete(owned, "")
	namespaces := make([]string, 0, len(pvbs)+len(dus))
	for _, p := range pvbs {
		namespaces = append(namespaces, p.Spec.Pod.Namespace)
	}
	for _, d := range dus {
		namespaces = append(namespaces, d.Spec.SourceNamespace)
	}
	deleted, err := r.deleteData(ctx, location, b, owned, namespaces)
	if err != nil {
		problems = append(problems, err.Error())
		if deleted == 0 {
			return ctrl.Result{}, r.undo(ctx, dbr, b, problems)
		}
		return ctrl.Result{}, r.finish(ctx, dbr, b, problems...)
	}
	if len(problems) == 0 {
		if err := r.deleteBackup(ctx, b); err != nil {
			return ctrl.Result{}, err
		}
	}
	r.Recorder.Eventf(dbr, corev1.EventTypeNormal, "Deleted", "backup %s: %d snapshots and its record deleted from %s; "+
		"full maintenance reclaims their space once Kopia's safety margins have passed", b.Name, deleted, location)
	return ctrl.Result{}, r.finish(ctx, dbr, b, problems...)
}

func (r *Reconciler) podVolumeBackups(ctx context.Context, b *velerov1.Backup) ([]velerov1.PodVolumeBackup, error) {
	list := &velerov1.PodVolumeBackupList{}
	if err := r.Client.List(ctx, list, client.InNamespace(b.Namespace), client.MatchingLabels{velerov1.LabelBackupName: b.Name}); err != nil {
		return nil, err
	}
	return slices.DeleteFunc(list.Items, func(p velerov1.PodVolumeBackup) bool {
		uid, ok := p.Labels[velerov1.LabelBackupUID]
		return ok && uid != string(b.UID) // an older backup of the same name
	}), nil
}

// stop asks every running PodVolumeBackup of the backup to cancel, and ends those no node-agent
// accepted within AcceptGrace; it returns those that still run.
func (r *Reconciler) stop(ctx context.Context, dbr *velerov1.DeleteBackupRequest, pvbs []velerov1.PodVolumeBackup) ([]string, error) {
	var running []string
	for i := range pvbs {
		p := &pvbs[i]
		if p.Status.Phase.Terminal() {
			continue
		}
		if !p.Spec.Cancel {
			patch := client.MergeFrom(p.DeepCopy())
			p.Spec.Cancel = true
			if err := r.Client.Patch(ctx, p, patch); client.IgnoreNotFound(err) != nil {
				return nil, err
			}
		}
		unaccepted := p.Status.Phase == "" || p.Status.Phase == velerov1.PodVolumePhaseNew
		if unaccepted && r.Clock.Since(dbr.CreationTimestamp.Time) >= AcceptGrace {
			err := operation.PatchStatus(ctx, r.Client, p, map[string]any{"phase": velerov1.PodVolumePhaseCanceled,
				"message":             fmt.Sprintf("canceled by DeleteBackupRequest %s; no node-agent accepted it within %s", dbr.Name, AcceptGrace),
				"completionTimestamp": metav1.NewTime(r.Clock.Now().Truncate(time.Second))})
			if client.IgnoreNotFound(err) != nil {
				return nil, err
			}
			continue
		}
		running = append(running, fmt.Sprintf("%s (%s on node %s)", p.Name, p.Status.Phase, p.Spec.Node))
	}
	return running, nil
}

// undo puts the backup back in its previous phase (nothing of it was deleted) and ends the
// request with problems.
func (r *Reconciler) undo(ctx context.Context, dbr *velerov1.DeleteBackupRequest, b *velerov1.Backup, problems []string) error {
	if previous := dbr.Annotations[AnnotationPreviousPhase]; previous != "" && b.Status.Phase == velerov1.BackupPhaseDeleting {
		if err := operation.PatchStatus(ctx, r.Client, b, map[string]any{"phase": previous}); client.IgnoreNotFound(err) != nil {
			return err
		}
	}
	return r.finish(ctx, dbr, b, problems...)
}

// finish ends the request: Processed, with problems as its errors. A Backup object deleted before
// it ended waits for this request (velero.io FinalizerUnfinished): it goes now, whatever
// happened, and what could not be deleted is named with how to find it.
func (r *Reconciler) finish(ctx context.Context, dbr *velerov1.DeleteBackupRequest, b *velerov1.Backup, problems ...string) error {
	logger := log.FromContext(ctx).WithValues("backup", dbr.Spec.BackupName, "deleteBackupRequest", dbr.Name)
	if b != nil && !b.DeletionTimestamp.IsZero() && controllerutil.ContainsFinalizer(b, velerov1.FinalizerUnfinished) {
		if len(problems) > 0 {
			problems = append(problems, fmt.Sprintf("backup %s was deleted before it ended: what it wrote and could not be deleted stays "+
				"in the store, as snapshots tagged backup-uid:%s (kopia snapshot list --all --tags backup-uid:%s)", b.Name, b.UID, b.UID))
		}
		if err := r.release(ctx, b); err != nil {
			return err
		}
	}
	if len(problems) > 0 {
		logger.Info("backup deletion ended with errors", "errors", problems)
		r.Recorder.Eventf(dbr, corev1.EventTypeWarning, "DeleteFailed", "%s", operation.JoinFirst(problems, 3))
		if b != nil {
			r.Recorder.Eventf(b, corev1.EventTypeWarning, "DeleteFailed", "DeleteBackupRequest %s: %s", dbr.Name, operation.JoinFirst(problems, 3))
		}
	} else {
		logger.Info("backup deleted")
	}
	return operation.PatchStatus(ctx, r.Client, dbr, map[string]any{"phase": velerov1.DeleteBackupRequestPhaseProcessed, "errors": problems})
}

// deleteBackup deletes the Backup object, FinalizerUnfinished included: what it guards (the
// backup's data) is this request's to delete, done or reported by the caller.
func (r *Reconciler) deleteBackup(ctx context.Context, b *velerov1.Backup) error {
	if err := r.Client.Delete(ctx, b); client.IgnoreNotFound(err) != nil {
		return err
	}
	return r.release(ctx, b)
}

// release takes FinalizerUnfinished off the Backup.
func (r *Reconciler) release(ctx context.Context, b *velerov1.Backup) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		fresh := &velerov1.Backup{}
		if err := r.Client.Get(ctx, client.ObjectKeyFromObject(b), fresh); err != nil || fresh.UID != b.UID {
			return client.IgnoreNotFound(err)
		}
		patch := client.MergeFromWithOptions(fresh.DeepCopy(), client.MergeFromWithOptimisticLock{})
		if !controllerutil.RemoveFinalizer(fresh, velerov1.FinalizerUnfinished) {
			return nil
		}
		return client.IgnoreNotFound(r.Client.Patch(ctx, fresh, patch))
	})
}
