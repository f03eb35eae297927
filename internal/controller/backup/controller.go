// Package backup provides ferry-server's Backup controller: it selects the volumes of a Backup,
// asks the node-agent of each pod's node to back up pod volumes (PodVolumeBackups, the
// file-system path) and, with spec.snapshotMoveData, snapshots claims whose storage class has a
// VolumeSnapshotClass and asks the data mover to move them (VolumeSnapshots and DataUploads);
// it sums up their outcome in the Backup's status, and stores a record of the backup in the
// repository so that a fresh cluster can find it.
package backup

import (
	"cmp"
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	velerov2alpha1 "github.com/ferry-backup/ferry/api/v2alpha1"
	"github.com/ferry-backup/ferry/internal/onchange"
	"github.com/ferry-backup/ferry/internal/operation"
	"github.com/ferry-backup/ferry/internal/repoaccess"
)

// +kubebuilder:rbac:groups=velero.io,resources=backups,verbs=get;list;watch;patch;delete,namespace=velero
// +kubebuilder:rbac:groups=velero.io,resources=backups/status,verbs=get;patch;update,namespace=velero
// +kubebuilder:rbac:groups=velero.io,resources=podvolumebackups,verbs=get;list;watch;create,namespace=velero
// +kubebuilder:rbac:groups=velero.io,resources=backuprepositories,verbs=get;list;watch;create,namespace=velero
// +kubebuilder:rbac:groups=velero.io,resources=backupstoragelocations,verbs=get;list;watch,namespace=velero
// +kubebuilder:rbac:groups=velero.io,resources=deletebackuprequests,verbs=create,namespace=velero
// +kubebuilder:rbac:groups=velero.io,resources=datauploads,verbs=get;list;watch;create;patch;delete,namespace=velero
// +kubebuilder:rbac:groups="",resources=namespaces;pods;persistentvolumeclaims,verbs=get;list
// +kubebuilder:rbac:groups=snapshot.storage.k8s.io,resources=volumesnapshots,verbs=get;list;watch;create;delete
// +kubebuilder:rbac:groups=snapshot.storage.k8s.io,resources=volumesnapshotclasses,verbs=get;list
// +kubebuilder:rbac:groups=storage.k8s.io,resources=storageclasses,verbs=get;list
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch,namespace=velero

// Defaults.
const (
	DefaultTTL           = 30 * 24 * time.Hour
	DefaultVolumeTimeout = 4 * time.Hour
	// RepositoryWaitLimit is how long a backup waits for its location's repository to be Ready
	// (the BackupRepository controller tries again every minute) before it fails.
	RepositoryWaitLimit = 5 * time.Minute
)

// Reconciler runs Backups.
type Reconciler struct {
	Client client.Client
	// Cluster reads pods, claims and namespaces across the cluster, uncached.
	Cluster      client.Reader
	Recorder     record.EventRecorder
	Clock        clock.PassiveClock
	Repositories *repoaccess.Access
}

// SetupWithManager registers the controller; it also wakes up when a PodVolumeBackup or a
// DataUpload it created appears, goes or changes phase, not at each progress tick (DataUploads
// by their velero.io/backup-name label: the Backup is not their controller).
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	pvbPhase := onchange.Phase(func(p *velerov1.PodVolumeBackup) string { return string(p.Status.Phase) })
	duPhase := onchange.Phase(func(d *velerov2alpha1.DataUpload) string { return string(d.Status.Phase) })
	return ctrl.NewControllerManagedBy(mgr).For(&velerov1.Backup{}).Owns(&velerov1.PodVolumeBackup{}, builder.WithPredicates(pvbPhase)).
		Watches(&velerov2alpha1.DataUpload{}, handler.EnqueueRequestsFromMapFunc(backupOf), builder.WithPredicates(duPhase)).
		Named("backup").Complete(r)
}

func backupOf(_ context.Context, obj client.Object) []reconcile.Request {
	name := obj.GetLabels()[velerov1.LabelBackupName]
	if name == "" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: client.ObjectKey{Namespace: obj.GetNamespace(), Name: name}}}
}

// Reconcile: New → (validation) → InProgress, with one PodVolumeBackup per selected pod volume
// and one VolumeSnapshot and DataUpload per claim for the data mover → Completed, PartiallyFailed or Failed once all have ended.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	b := &velerov1.Backup{}
	if err := r.Client.Get(ctx, req.NamespacedName, b); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if dropped, err := r.dropLegacyFinalizer(ctx, b); dropped || err != nil {
		return ctrl.Result{}, err // the patch brings the Backup back
	}
	if !b.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.deleted(ctx, b)
	}
	switch b.Status.Phase {
	case "", velerov1.BackupPhaseNew:
		if _, synced := b.Annotations[velerov1.AnnotationSyncedFrom]; synced {
			return ctrl.Result{}, nil // made by backup sync, which sets its status next
		}
		return r.start(ctx, b)
	case velerov1.BackupPhaseInProgress:
		if added, err := r.holdUntilEnded(ctx, b); added || err != nil {
			return ctrl.Result{}, err // started by an older version; the patch brings it back
		}
		return r.progress(ctx, b)
	case velerov1.BackupPhaseDeleting:
		return ctrl.Result{}, nil // a DeleteBackupRequest owns it now
	}
	if released, err := r.releaseEnded(ctx, b); released || err != nil {
		return ctrl.Result{}, err // the patch brings it back
	}
	return r.expire(ctx, b)
}

// start validates the backup, creates its PodVolumeBackups, VolumeSnapshots and DataUploads and
// moves it to InProgress. Every name is derived from the backup and the volume, so a start
// repeated after a restart makes nothing twice.
func (r *Reconciler) start(ctx context.Context, b *velerov1.Backup) (ctrl.Result, error) {
	bsl, problems, err := r.validate(ctx, b)
	if err != nil {
		return ctrl.Result{}, err
	}
	if len(problems) > 0 {
		r.Recorder.Eventf(b, corev1.EventTypeWarning, "FailedValidation", "%v", problems)
		log.FromContext(ctx).Info("backup ended", "backup", b.Name, "phase", velerov1.BackupPhaseFailedValidation, "problems", problems)
		return ctrl.Result{}, operation.PatchStatus(ctx, r.Client, b, map[string]any{
			"phase": velerov1.BackupPhaseFailedValidation, "validationErrors": problems, "completionTimestamp": r.now()})
	}
	if bsl.Status.Phase == velerov1.BackupStorageLocationPhaseUnavailable {
		return ctrl.Result{}, r.fail(ctx, b, fmt.Sprintf("backup storage location %s is Unavailable: %s", bsl.Name, bsl.Status.Message))
	}
	sel, wait, err := r.readyRepositories(ctx, b, bsl)
	if err != nil || wait != nil {
		return *cmp.Or(wait, &ctrl.Result{}), err
	}
	if _, err := r.holdUntilEnded(ctx, b); err != nil {
		return ctrl.Result{}, err // before anything is written that a deletion would have to undo
	}
	for _, v := range sel.PodVolumes {
		if err := r.createPodVolumeBackup(ctx, b, bsl.Name, v); err != nil {
			return ctrl.Result{}, err
		}
	}
	moved := 0
	for _, c := range sel.Claims {
		skip, err := r.createDataUpload(ctx, b, bsl.Name, c)
		if err != nil {
			return ctrl.Result{}, err
		}
		if skip != "" {
			sel.Skipped = append(sel.Skipped, skip)
			continue
		}
		moved++
	}
	if b.Spec.StorageLocation == "" {
		// Say which location the default was, as Velero does: describe, sync and deletion use it.
		patch := client.MergeFrom(b.DeepCopy())
		b.Spec.StorageLocation = bsl.Name
		if err := r.Client.Patch(ctx, b, patch); err != nil {
			return ctrl.Result{}, err
		}
	}
	ttl := b.Spec.TTL.Duration
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	start := r.now()
	expires := metav1.NewTime(start.Add(ttl))
	r.Recorder.Eventf(b, corev1.EventTypeNormal, "Started", "backing up %d volumes (%d through the data mover, %d skipped) into %s",
		len(sel.PodVolumes)+moved, moved, len(sel.Skipped), bsl.Name)
	log.FromContext(ctx).Info("backup started", "backup", b.Name, "volumes", len(sel.PodVolumes)+moved, "dataUploads", moved,
		"skipped", len(sel.Skipped), "backupStorageLocation", bsl.Name)
	fields := map[string]any{
		"phase": velerov1.BackupPhaseInProgress, "startTimestamp": start, "expiration": expires, "formatVersion": "1.1.0",
		"podVolumeBackups": velerov1.VolumeOperationCounts{Total: len(sel.PodVolumes), Skipped: len(sel.Skipped)},
		"conditions":       skippedCondition(sel.Skipped, start),
	}
	if moved > 0 {
		fields["dataUploads"] = velerov1.VolumeOperationCounts{Total: moved}
	}
	return ctrl.Result{}, operation.PatchStatus(ctx, r.Client, b, fields)
}

// validate checks the spec and finds the storage location; problems are the user's to fix.
func (r *Reconciler) validate(ctx context.Context, b *velerov1.Backup) (*velerov1.BackupStorageLocation, []string, error) {
	var problems []string
	// Under Velero's CRDs a duration may be text Go cannot read.
	for _, err := range []error{b.Spec.TTL.Err("spec.ttl"), b.Spec.CSISnapshotTimeout.Err("spec.csiSnapshotTimeout"),
		b.Spec.ItemOperationTimeout.Err("spec.itemOperationTimeout")} {
		if err != nil {
			problems = append(problems, err.Error())
		}
	}
	bsl, err := r.location(ctx, b)
	if apierrors.IsNotFound(err) || bsl == nil {
		name := b.Spec.StorageLocation
		if name == "" {
			name = "(default)"
		}
		return nil, append(problems, fmt.Sprintf("spec.storageLocation: backup storage location %s not found", name)), nil
	}
	if err != nil {
		return nil, nil, err
	}
	if bsl.Spec.AccessMode == velerov1.BackupStorageLocationAccessModeReadOnly {
		problems = append(problems, fmt.Sprintf("spec.storageLocation: backup storage location %s is ReadOnly", bsl.Name))
	}
	return bsl, problems, nil
}

// location returns the named location, or the default one (spec.default) when none is named.
func (r *Reconciler) location(ctx context.Context, b *velerov1.Backup) (*velerov1.BackupStorageLocation, error) {
	if b.Spec.StorageLocation != "" {
		bsl := &velerov1.BackupStorageLocation{}
		err := r.Client.Get(ctx, client.ObjectKey{Namespace: b.Namespace, Name: b.Spec.StorageLocation}, bsl)
		return bsl, err
	}
	list := &velerov1.BackupStorageLocationList{}
	if err := r.Client.List(ctx, list, client.InNamespace(b.Namespace)); err != nil {
		return nil, err
	}
	for i := range list.Items {
		if list.Items[i].Spec.Default || len(list.Items) == 1 {
			return &list.Items[i], nil
		}
	}
	return nil, nil
}

func (r *Reconciler) fail(ctx context.Context, b *velerov1.Backup, reason string) error {
	r.Recorder.Event(b, corev1.EventTypeWarning, string(velerov1.BackupPhaseFailed), reason)
	log.FromContext(ctx).Info("backup ended", "backup", b.Name, "phase", velerov1.BackupPhaseFailed, "reason", reason)
	return operation.PatchStatus(ctx, r.Client, b, map[string]any{
		"phase": velerov1.BackupPhaseFailed, "failureReason": reason, "completionTimestamp": r.now()})
}

func (r *Reconciler) now() metav1.Time { return metav1.NewTime(r.Clock.Now().Truncate(time.Second)) }
