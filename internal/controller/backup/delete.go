package backup

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
)

// LegacyFinalizer was put on every Backup by Ferry versions that deleted a backup's data when
// its object was deleted. Data is now deleted only through a DeleteBackupRequest, so the
// finalizer is taken off wherever it is found, without deleting anything.
const LegacyFinalizer = "ferry.io/delete-snapshots"

// expiryRetry is how long an expired backup whose deletion request failed waits before the next
// request, once the failed one is cleaned up.
const expiryRetry = time.Hour

// dropLegacyFinalizer removes LegacyFinalizer; it reports whether it did.
func (r *Reconciler) dropLegacyFinalizer(ctx context.Context, b *velerov1.Backup) (bool, error) {
	if !controllerutil.ContainsFinalizer(b, LegacyFinalizer) {
		return false, nil
	}
	patch := client.MergeFrom(b.DeepCopy())
	controllerutil.RemoveFinalizer(b, LegacyFinalizer)
	return true, client.IgnoreNotFound(r.Client.Patch(ctx, b, patch))
}

// holdUntilEnded puts velerov1.FinalizerUnfinished on a running backup; it reports whether it
// added it.
func (r *Reconciler) holdUntilEnded(ctx context.Context, b *velerov1.Backup) (bool, error) {
	if controllerutil.ContainsFinalizer(b, velerov1.FinalizerUnfinished) {
		return false, nil
	}
	patch := client.MergeFromWithOptions(b.DeepCopy(), client.MergeFromWithOptimisticLock{})
	controllerutil.AddFinalizer(b, velerov1.FinalizerUnfinished)
	return true, r.Client.Patch(ctx, b, patch)
}

// releaseEnded takes velerov1.FinalizerUnfinished off a backup that has ended (its record is
// written: backup sync can bring it back); it reports whether it did.
func (r *Reconciler) releaseEnded(ctx context.Context, b *velerov1.Backup) (bool, error) {
	if !controllerutil.ContainsFinalizer(b, velerov1.FinalizerUnfinished) {
		return false, nil
	}
	patch := client.MergeFrom(b.DeepCopy())
	controllerutil.RemoveFinalizer(b, velerov1.FinalizerUnfinished)
	return true, client.IgnoreNotFound(r.Client.Patch(ctx, b, patch))
}

// UnfinishedRequestName is the name of the DeleteBackupRequest made for a Backup deleted before
// it ended.
func UnfinishedRequestName(b *velerov1.Backup) string {
	return fmt.Sprintf("%s-deleted-%.8s", b.Name, b.UID)
}

// deleted handles a Backup object being deleted. One that has ended goes at once: only the
// object is deleted, its data stays and backup sync brings it back. One that has not ended has
// no record yet, so nothing could bring it back and what it wrote would be left unowned: a
// DeleteBackupRequest stops it and deletes what it wrote, and takes the finalizer off when it
// ends, whatever happened (the deletion of an object always completes).
func (r *Reconciler) deleted(ctx context.Context, b *velerov1.Backup) error {
	if !controllerutil.ContainsFinalizer(b, velerov1.FinalizerUnfinished) {
		return nil
	}
	if b.Status.Phase.Ended() {
		_, err := r.releaseEnded(ctx, b)
		return err
	}
	if b.Status.Phase == velerov1.BackupPhaseDeleting {
		return nil // a DeleteBackupRequest owns it; it takes the finalizer off when it ends
	}
	dbr := &velerov1.DeleteBackupRequest{
		ObjectMeta: metav1.ObjectMeta{Namespace: b.Namespace, Name: UnfinishedRequestName(b),
			Labels: map[string]string{velerov1.LabelBackupName: b.Name, velerov1.LabelBackupUID: string(b.UID)}},
		Spec: velerov1.DeleteBackupRequestSpec{BackupName: b.Name},
	}
	switch err := r.Client.Create(ctx, dbr); {
	case apierrors.IsAlreadyExists(err):
		return nil // made before; it takes the finalizer off when it ends
	case err != nil:
		return err
	}
	r.Recorder.Eventf(b, corev1.EventTypeNormal, "DeletedUnfinished", "deleted while %s: DeleteBackupRequest %s stops it and deletes what it wrote",
		phaseOrNew(b.Status.Phase), dbr.Name)
	log.FromContext(ctx).Info("unfinished backup deleted", "backup", b.Name, "phase", b.Status.Phase, "deleteBackupRequest", dbr.Name)
	return nil
}

func phaseOrNew(p velerov1.BackupPhase) velerov1.BackupPhase {
	if p == "" {
		return velerov1.BackupPhaseNew
	}
	return p
}

// ExpiryRequestName is the name of the DeleteBackupRequest that expiry creates for a backup.
func ExpiryRequestName(backup string) string { return backup + "-expired" }

// expire asks for the backup's deletion once status.expiration has passed, with a
// DeleteBackupRequest as Velero's garbage collection does, and otherwise comes back then.
func (r *Reconciler) expire(ctx context.Context, b *velerov1.Backup) (ctrl.Result, error) {
	if b.Status.Expiration == nil {
		return ctrl.Result{}, nil
	}
	if left := b.Status.Expiration.Sub(r.Clock.Now()); left > 0 {
		return ctrl.Result{RequeueAfter: left}, nil
	}
	dbr := &velerov1.DeleteBackupRequest{
		ObjectMeta: metav1.ObjectMeta{Namespace: b.Namespace, Name: ExpiryRequestName(b.Name),
			Labels: map[string]string{velerov1.LabelBackupName: b.Name, velerov1.LabelBackupUID: string(b.UID)}},
		Spec: velerov1.DeleteBackupRequestSpec{BackupName: b.Name},
	}
	err := r.Client.Create(ctx, dbr)
	if apierrors.IsAlreadyExists(err) {
		// Being deleted, or a previous request failed (its errors say why); once that request
		// is cleaned up, the next one is made.
		return ctrl.Result{RequeueAfter: expiryRetry}, nil
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	r.Recorder.Eventf(b, corev1.EventTypeNormal, "Expired", "expired at %s; DeleteBackupRequest %s deletes it and its snapshots",
		b.Status.Expiration.UTC().Format(time.RFC3339), dbr.Name)
	log.FromContext(ctx).Info("backup expired", "backup", b.Name, "deleteBackupRequest", dbr.Name)
	return ctrl.Result{RequeueAfter: expiryRetry}, nil
}
