// Package restore provides ferry-server's Restore controller: it writes each volume of a backup
// into the same or a mapped namespace. A claim that does not exist there is re-created from the
// backup's record and filled by the data mover (a DataDownload); a claim that exists, and a volume
// without a claim (emptyDir), is written into the running pod that mounts it, through a
// PodVolumeRestore handled by the node-agent of that pod's node. Both paths restore snapshots
// of either backup path.
package restore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
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
	"github.com/ferry-backup/ferry/internal/backuprecord"
	"github.com/ferry-backup/ferry/internal/onchange"
	"github.com/ferry-backup/ferry/internal/operation"
	"github.com/ferry-backup/ferry/internal/repoaccess"
	"github.com/ferry-backup/ferry/internal/repository"
)

// +kubebuilder:rbac:groups=velero.io,resources=restores,verbs=get;list;watch;patch,namespace=velero
// +kubebuilder:rbac:groups=velero.io,resources=restores/status,verbs=get;patch;update,namespace=velero
// +kubebuilder:rbac:groups=velero.io,resources=backups,verbs=get;list;watch,namespace=velero
// +kubebuilder:rbac:groups=velero.io,resources=podvolumerestores,verbs=get;list;watch;create,namespace=velero
// +kubebuilder:rbac:groups=velero.io,resources=datadownloads,verbs=get;list;watch;create;patch;delete,namespace=velero
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list
// +kubebuilder:rbac:groups="",resources=persistentvolumeclaims,verbs=get;list;create
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=create
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch,namespace=velero

// Reconciler runs Restores.
type Reconciler struct {
	Client client.Client
	// Cluster reads pods, claims and namespaces across the cluster, uncached.
	Cluster      client.Reader
	Recorder     record.EventRecorder
	Clock        clock.PassiveClock
	Repositories *repoaccess.Access
}

// SetupWithManager registers the controller, also woken when one of its PodVolumeRestores or
// DataDownloads (by their velero.io/restore-name label: the Restore is not their controller)
// appears, goes or changes phase, not at each progress tick.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	pvrPhase := onchange.Phase(func(p *velerov1.PodVolumeRestore) string { return string(p.Status.Phase) })
	ddPhase := onchange.Phase(func(d *velerov2alpha1.DataDownload) string { return string(d.Status.Phase) })
	return ctrl.NewControllerManagedBy(mgr).For(&velerov1.Restore{}).Owns(&velerov1.PodVolumeRestore{}, builder.WithPredicates(pvrPhase)).
		Watches(&velerov2alpha1.DataDownload{}, handler.EnqueueRequestsFromMapFunc(restoreOf), builder.WithPredicates(ddPhase)).
		Named("restore").Complete(r)
}

func restoreOf(_ context.Context, obj client.Object) []reconcile.Request {
	name := obj.GetLabels()[velerov1.LabelRestoreName]
	if name == "" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: client.ObjectKey{Namespace: obj.GetNamespace(), Name: name}}}
}

// Reconcile: New → (validation) → InProgress, with one DataDownload per re-created claim and one
// PodVolumeRestore per other volume that has a target pod → Completed, PartiallyFailed or Failed once all have ended.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	rs := &velerov1.Restore{}
	if err := r.Client.Get(ctx, req.NamespacedName, rs); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	switch rs.Status.Phase {
	case "", velerov1.RestorePhaseNew:
		return ctrl.Result{}, r.start(ctx, rs)
	case velerov1.RestorePhaseInProgress:
		return ctrl.Result{}, r.progress(ctx, rs)
	}
	return ctrl.Result{}, nil
}

func (r *Reconciler) start(ctx context.Context, rs *velerov1.Restore) error {
	if rs.Spec.BackupName == "" && rs.Spec.ScheduleName != "" {
		return r.pickScheduledBackup(ctx, rs)
	}
	rec, problem, err := r.backupRecord(ctx, rs)
	if err != nil {
		return err
	}
	var problems []string
	if problem != "" {
		problems = append(problems, problem)
	}
	if err := rs.Spec.ItemOperationTimeout.Err("spec.itemOperationTimeout"); err != nil {
		problems = append(problems, err.Error()) // under Velero's CRDs a duration may be text Go cannot read
	}
	if len(problems) > 0 {
		r.Recorder.Event(rs, corev1.EventTypeWarning, "FailedValidation", strings.Join(problems, "; "))
		log.FromContext(ctx).Info("restore ended", "restore", rs.Name, "phase", velerov1.RestorePhaseFailedValidation, "problems", problems)
		return operation.PatchStatus(ctx, r.Client, rs, map[string]any{
			"phase": velerov1.RestorePhaseFailedValidation, "validationErrors": problems, "completionTimestamp": r.now()})
	}
	var skipped []string
	wanted, created, moved := 0, 0, 0
	placed := map[string]bool{}
	for _, v := range rec.Volumes {
		if v.Phase != string(velerov1.PodVolumePhaseCompleted) || !included(rs, v.Namespace) {
			continue
		}
		wanted++
		to, skip, err := r.place(ctx, rs, rec, v, placed)
		switch {
		case err != nil:
			return err
		case skip != "":
			skipped = append(skipped, skip)
		case to == toPod:
			created++
		case to == toClaim:
			moved++
		}
	}
	fields := map[string]any{"startTimestamp": r.now(), "podVolumeRestores": velerov1.VolumeOperationCounts{Total: created, Skipped: len(skipped)}}
	if moved > 0 {
		fields["dataDownloads"] = velerov1.VolumeOperationCounts{Total: moved}
	}
	if len(skipped) > 0 {
		fields["warnings"] = len(skipped)
		fields["conditions"] = []metav1.Condition{{Type: "VolumesSkipped", Status: metav1.ConditionTrue, Reason: "NotRestored",
			Message: operation.JoinFirst(skipped, 10), LastTransitionTime: r.now()}}
	}
	if created+moved == 0 {
		// Nothing to wait for: a restore that restores none of the volumes it was asked for failed.
		reason := fmt.Sprintf("no volume restored: %s", operation.JoinFirst(skipped, 10))
		if wanted == 0 {
			reason = fmt.Sprintf("backup %s holds no backed-up volume in the namespaces this restore includes", rec.Name)
		}
		fields["phase"], fields["failureReason"], fields["completionTimestamp"] = velerov1.RestorePhaseFailed, reason, r.now()
		r.Recorder.Event(rs, corev1.EventTypeWarning, string(velerov1.RestorePhaseFailed), reason)
		log.FromContext(ctx).Info("restore ended", "restore", rs.Name, "backup", rec.Name, "phase", velerov1.RestorePhaseFailed, "reason", reason)
		return operation.PatchStatus(ctx, r.Client, rs, fields)
	}
	fields["phase"] = velerov1.RestorePhaseInProgress
	r.Recorder.Eventf(rs, corev1.EventTypeNormal, "Started", "restoring %d volumes of backup %s (%d into re-created claims, %d skipped)",
		created+moved, rec.Name, moved, len(skipped))
	log.FromContext(ctx).Info("restore started", "restore", rs.Name, "backup", rec.Name, "volumes", created+moved,
		"dataDownloads", moved, "skipped", len(skipped))
	return operation.PatchStatus(ctx, r.Client, rs, fields)
}

// backupRecord finds what the backup holds: from its Backup and PodVolumeBackups in this
// cluster, else from the record in the repository of the default location. A problem is the
// validation error to report.
func (r *Reconciler) backupRecord(ctx context.Context, rs *velerov1.Restore) (backuprecord.Record, string, error) {
	if rs.Spec.BackupName == "" {
		return backuprecord.Record{}, "spec.backupName: required (or spec.scheduleName)", nil
	}
	b := &velerov1.Backup{}
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: rs.Namespace, Name: rs.Spec.BackupName}, b); err != nil {
		if client.IgnoreNotFound(err) != nil {
			return backuprecord.Record{}, "", err
		}
		rec, found, unreadable, err := r.recordFromStorage(ctx, rs)
		if err != nil || found {
			return rec, "", err
		}
		return rec, fmt.Sprintf("spec.backupName: backup %s not found in the cluster or in any storage location%s",
			rs.Spec.BackupName, unreadableSuffix(unreadable)), nil
	}
	if b.Status.Phase != velerov1.BackupPhaseCompleted && b.Status.Phase != velerov1.BackupPhasePartiallyFailed {
		return backuprecord.Record{}, fmt.Sprintf("spec.backupName: backup %s is %s, not Completed", b.Name, b.Status.Phase), nil
	}
	rec, found, unreadable, err := r.recordFromStorage(ctx, rs, b.Spec.StorageLocation)
	if err != nil || found {
		return rec, "", err
	}
	where := "any storage location"
	if b.Spec.StorageLocation != "" {
		where = "storage location " + b.Spec.StorageLocation
	}
	return rec, fmt.Sprintf("spec.backupName: backup %s exists in the cluster, but its record is not in %s%s",
		rs.Spec.BackupName, where, unreadableSuffix(unreadable)), nil
}

// recordFromStorage looks for the backup's record in the locations (all when none is given);
// unreadable lists the locations that could not be opened, and why.
func (r *Reconciler) recordFromStorage(ctx context.Context, rs *velerov1.Restore, locations ...string) (rec backuprecord.Record, found bool, unreadable []string, err error) {
	if len(locations) == 0 || locations[0] == "" {
		list := &velerov1.BackupStorageLocationList{}
		if err := r.Client.List(ctx, list, client.InNamespace(rs.Namespace)); err != nil {
			return rec, false, nil, err
		}
		locations = nil
		for _, l := range list.Items {
			locations = append(locations, l.Name)
		}
	}
	for _, loc := range locations {
		rep, release, err := r.Repositories.Open(ctx, loc, repoaccess.ForRestore)
		if err != nil {
			unreadable = append(unreadable, err.Error())
			continue
		}
		err = rep.LoadRecord(ctx, backuprecord.Kind, rs.Spec.BackupName, &rec)
		release()
		if err == nil {
			rec.StorageLocation = loc
			return rec, true, nil, nil
		}
		if !errors.Is(err, repository.ErrNoRecord) {
			return rec, false, nil, err
		}
	}
	return rec, false, unreadable, nil
}

func unreadableSuffix(unreadable []string) string {
	if len(unreadable) == 0 {
		return ""
	}
	return "; could not read " + operation.JoinFirst(unreadable, 3)
}

func included(rs *velerov1.Restore, ns string) bool {
	inc := rs.Spec.IncludedNamespaces
	return (len(inc) == 0 || slices.Contains(inc, "*") || slices.Contains(inc, ns)) && !slices.Contains(rs.Spec.ExcludedNamespaces, ns)
}

func (r *Reconciler) now() metav1.Time { return metav1.NewTime(r.Clock.Now().Truncate(time.Second)) }

// pickScheduledBackup turns a restore of a schedule into a restore of its latest Completed
// backup, as Velero does: spec.backupName is written, so every later look sees the same backup.
// A schedule without one fails validation, naming it.
func (r *Reconciler) pickScheduledBackup(ctx context.Context, rs *velerov1.Restore) error {
	list := &velerov1.BackupList{}
	if err := r.Client.List(ctx, list, client.InNamespace(rs.Namespace), client.MatchingLabels{velerov1.LabelScheduleName: rs.Spec.ScheduleName}); err != nil {
		return err
	}
	var latest *velerov1.Backup
	for i := range list.Items {
		b := &list.Items[i]
		if b.Status.Phase != velerov1.BackupPhaseCompleted || b.Status.StartTimestamp == nil || b.DeletionTimestamp != nil {
			continue
		}
		// Start times have 1 s resolution; a schedule's backup names end in their time.
		if latest == nil || b.Status.StartTimestamp.After(latest.Status.StartTimestamp.Time) ||
			b.Status.StartTimestamp.Equal(latest.Status.StartTimestamp) && b.Name > latest.Name {
			latest = b
		}
	}
	if latest == nil {
		problem := fmt.Sprintf("spec.scheduleName: schedule %s has no Completed backup", rs.Spec.ScheduleName)
		r.Recorder.Event(rs, corev1.EventTypeWarning, "FailedValidation", problem)
		return operation.PatchStatus(ctx, r.Client, rs, map[string]any{
			"phase": velerov1.RestorePhaseFailedValidation, "validationErrors": []string{problem}, "completionTimestamp": r.now()})
	}
	patch := client.MergeFrom(rs.DeepCopy())
	rs.Spec.BackupName = latest.Name
	if err := r.Client.Patch(ctx, rs, patch); err != nil {
		return fmt.Errorf("set spec.backupName of restore %s to %s: %w", rs.Name, latest.Name, err)
	}
	log.FromContext(ctx).Info("restore of a schedule", "restore", rs.Name, "schedule", rs.Spec.ScheduleName, "backup", latest.Name)
	return nil // the update brings the restore back
}
