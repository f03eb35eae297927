// Package backuprepository provides ferry-server's BackupRepository controller: it creates the
// Kopia repository of a location (ferry-server is the only process that creates repositories),
// keeps the phase Ready or NotReady, and runs quick and full maintenance on schedule, each in a
// Job of its own (never inside a reconcile: a full maintenance of a large repository takes hours
// and memory), keeping the latest results in the status.
package backuprepository

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/nodeconfig"
	"github.com/ferry-backup/ferry/internal/onchange"
	"github.com/ferry-backup/ferry/internal/operation"
	"github.com/ferry-backup/ferry/internal/repoaccess"
	"github.com/ferry-backup/ferry/internal/repository"
	"github.com/ferry-backup/ferry/internal/serverjob"
)

// +kubebuilder:rbac:groups=velero.io,resources=backuprepositories,verbs=get;list;watch;create;patch,namespace=velero
// +kubebuilder:rbac:groups=velero.io,resources=backuprepositories/status,verbs=get;patch;update,namespace=velero
// +kubebuilder:rbac:groups=velero.io,resources=backupstoragelocations,verbs=get;list;watch,namespace=velero
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get,namespace=velero
// +kubebuilder:rbac:groups=batch,resources=jobs,verbs=get;list;watch;create;patch;delete,namespace=velero
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list,namespace=velero
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get,resourceNames=ferry-server,namespace=velero

// Defaults and names.
const (
	DefaultMaintenanceFrequency = time.Hour
	DefaultFullMaintenanceEvery = 24 * time.Hour
	// AnnotationLastFull records when full maintenance last succeeded.
	AnnotationLastFull = "ferry.io/last-full-maintenance"
	retryNotReady      = time.Minute
	// retryFailedMaintenance is the wait after a failed maintenance; it doubles with each
	// failure in a row, up to the maintenance frequency.
	retryFailedMaintenance = 5 * time.Minute
)

// Reconciler keeps repositories ready and maintained.
type Reconciler struct {
	Client       client.Client
	Clock        clock.PassiveClock
	Repositories *repoaccess.Access
	// Config returns the node-agent ConfigMap's values (keepLatestMaintenance).
	Config func() nodeconfig.Config
	// FullEvery is how often full maintenance runs (default daily).
	FullEvery time.Duration
	// Pods reads the maintenance Jobs' pods and the server's Deployment, uncached.
	Pods client.Reader
	// ServerDeployment names the server's Deployment in the repository's namespace, whose pod
	// maintenance Jobs copy.
	ServerDeployment string
}

// SetupWithManager registers the controller. Spec changes (and creations) wake it, a new
// maintenance request, and changes of its maintenance Jobs, not its own status and annotation
// writes: the next run is the schedule's to decide (Reconcile asks to come back when it is due).
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&velerov1.BackupRepository{}, builder.WithPredicates(predicate.Or[client.Object](predicate.GenerationChangedPredicate{}, requestChanged))).
		Owns(&batchv1.Job{}).Named("backuprepository").Complete(r)
}

// Reconcile opens (creating when needed) the repository and runs maintenance when it is due.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	br := &velerov1.BackupRepository{}
	if err := r.Client.Get(ctx, req.NamespacedName, br); err != nil {
		if apierrors.IsNotFound(err) {
			forget(req.Name)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	bsl := &velerov1.BackupStorageLocation{}
	err := r.Client.Get(ctx, client.ObjectKey{Namespace: br.Namespace, Name: br.Spec.BackupStorageLocation}, bsl)
	if err != nil {
		return r.notReady(ctx, br, fmt.Errorf("backup storage location %q: %w", br.Spec.BackupStorageLocation, err))
	}
	if br.Spec.RepositoryType == velerov1.RepositoryTypeRestic {
		return r.notReady(ctx, br, errors.New("a restic repository: Ferry's node-agents restore from it (PodVolumeRestores with "+
			"uploaderType restic) but ferry-server neither backs up into it nor maintains it"))
	}
	readOnly := bsl.Spec.AccessMode == velerov1.BackupStorageLocationAccessModeReadOnly
	purpose := repoaccess.ForBackup
	if readOnly {
		purpose = repoaccess.ForRestore
	}
	// A BackupRepository with spec.volumeNamespace (Velero's server creates one per namespace)
	// is that namespace's repository in Velero's layout, unless the location says otherwise.
	rep, release, err := r.Repositories.OpenFor(ctx, bsl.Name, br.Spec.VolumeNamespace, purpose)
	if err != nil {
		return r.notReady(ctx, br, err)
	}
	defer release()
	note := frequencyNote(br)
	if br.Status.Phase != velerov1.BackupRepositoryPhaseReady || strings.Contains(br.Status.Message, frequencyField) != (note != "") {
		msg := "connected to " + rep.Location().String()
		if rep.Created() {
			msg = "created " + rep.Location().String()
		}
		if err := operation.PatchStatus(ctx, r.Client, br, map[string]any{"phase": velerov1.BackupRepositoryPhaseReady, "message": msg + note}); err != nil {
			return ctrl.Result{}, err
		}
	}
	if readOnly {
		// Never maintained: maintenance writes. A request is answered so that no one waits.
		if value := pendingRequest(br, nil); value != "" {
			now := r.Clock.Now()
			return ctrl.Result{}, r.answer(ctx, br, velerov1.MaintenanceAnswer{Request: value, Start: now, End: now,
				Message: fmt.Sprintf("location %s is read-only: its repository is not maintained", bsl.Name)})
		}
		return ctrl.Result{}, nil
	}
	return r.maintain(ctx, br)
}

const frequencyField = "spec.maintenanceFrequency"

// frequencyNote is what the status message says of a maintenanceFrequency that is not a
// duration (possible under Velero's CRDs): maintenance keeps the default schedule, since
// stopping it would let the repository grow without end.
func frequencyNote(br *velerov1.BackupRepository) string {
	if err := br.Spec.MaintenanceFrequency.Err(frequencyField); err != nil {
		return fmt.Sprintf("; %v: maintained every %s, the default", err, DefaultMaintenanceFrequency)
	}
	return ""
}

func (r *Reconciler) notReady(ctx context.Context, br *velerov1.BackupRepository, cause error) (ctrl.Result, error) {
	log.FromContext(ctx).Info("repository not ready", "backupRepository", br.Namespace+"/"+br.Name, "reason", cause.Error())
	fields := map[string]any{"phase": velerov1.BackupRepositoryPhaseNotReady, "message": cause.Error()}
	if same, err := onchange.StatusHolds(br, fields); same || err != nil {
		return ctrl.Result{RequeueAfter: retryNotReady}, err
	}
	return ctrl.Result{RequeueAfter: retryNotReady}, operation.PatchStatus(ctx, r.Client, br, fields)
}

// maintain records the results of finished maintenance Jobs, starts the Job that is due, and
// says when to come back. One Job at a time per repository; its changes wake the controller.
func (r *Reconciler) maintain(ctx context.Context, br *velerov1.BackupRepository) (ctrl.Result, error) {
	jobs, err := r.jobs(ctx, br)
	if err != nil {
		return ctrl.Result{}, err
	}
	running := ""
	for i := range jobs {
		j := &jobs[i]
		ended, failed := serverjob.Ended(j)
		switch {
		case !ended:
			running = j.Name
		case j.Annotations[AnnotationRecorded] == "":
			if err := r.recordJob(ctx, br, j, failed); err != nil {
				return ctrl.Result{}, err
			}
		}
	}
	if err := serverjob.Prune(ctx, r.Client, jobs, AnnotationRecorded, keepJobs); err != nil {
		return ctrl.Result{}, err
	}
	every := br.Spec.MaintenanceFrequency.Duration
	if every <= 0 {
		every = DefaultMaintenanceFrequency
	}
	now := r.Clock.Now()
	observe(br, every, now)
	if running != "" {
		return ctrl.Result{}, nil // the Job's end wakes this; its deadline bounds it
	}
	request, mode, err := r.requested(ctx, br, jobs)
	if err != nil {
		return ctrl.Result{}, err
	}
	if request == "" {
		if wait := nextMaintenance(br, every).Sub(now); wait > 0 {
			return ctrl.Result{RequeueAfter: wait}, nil
		}
		mode = string(repository.MaintenanceQuick)
		if r.fullDue(br, now) {
			mode = string(repository.MaintenanceFull)
		}
	}
	job, err := r.newJob(ctx, br, mode, request)
	if err != nil && request != "" {
		// A request is answered rather than kept waiting; the schedule retries on its own.
		return ctrl.Result{RequeueAfter: retryNotReady}, r.answer(ctx, br, velerov1.MaintenanceAnswer{Request: request, Mode: mode,
			Start: now, End: now, Message: "maintenance cannot start: " + err.Error()})
	}
	if errors.Is(err, serverjob.ErrNoTemplate) {
		// The repository stays usable; only its maintenance waits, and says why.
		log.FromContext(ctx).Info("maintenance cannot start", "backupRepository", br.Namespace+"/"+br.Name, "reason", err.Error())
		fields := map[string]any{"message": "maintenance cannot start: " + err.Error()}
		if same, err := onchange.StatusHolds(br, fields); same || err != nil {
			return ctrl.Result{RequeueAfter: retryNotReady}, err
		}
		return ctrl.Result{RequeueAfter: retryNotReady}, operation.PatchStatus(ctx, r.Client, br, fields)
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	if err := r.Client.Create(ctx, job); err != nil {
		return ctrl.Result{}, fmt.Errorf("create a maintenance Job for %s: %w", br.Name, err)
	}
	log.FromContext(ctx).Info("maintenance started", "backupRepository", br.Namespace+"/"+br.Name, "mode", mode, "job", job.Name, "request", request)
	if strings.HasPrefix(br.Status.Message, "maintenance cannot start") {
		return ctrl.Result{}, operation.PatchStatus(ctx, r.Client, br, map[string]any{"message": "maintenance started again, in Job " + job.Name})
	}
	return ctrl.Result{}, nil
}

// nextMaintenance is when maintenance is due: every after the last successful run, or, when the
// latest runs failed, retryFailedMaintenance after the last of them, doubled for each failure in
// a row (at most every). The zero time (due now) when it never ran.
func nextMaintenance(br *velerov1.BackupRepository, every time.Duration) time.Time {
	var due time.Time
	if last := br.Status.LastMaintenanceTime; last != nil {
		due = last.Add(every)
	}
	history := br.Status.RecentMaintenance
	failed := 0
	var lastFailed time.Time
	for i := len(history) - 1; i >= 0 && history[i].Result == velerov1.BackupRepositoryMaintenanceFailed; i-- {
		if failed == 0 && history[i].CompleteTimestamp != nil {
			lastFailed = history[i].CompleteTimestamp.Time
		}
		failed++
	}
	if failed == 0 || lastFailed.IsZero() {
		return due
	}
	wait := every
	if failed <= 16 {
		wait = min(every, retryFailedMaintenance<<(failed-1))
	}
	return lastFailed.Add(wait)
}

func (r *Reconciler) fullDue(br *velerov1.BackupRepository, now time.Time) bool {
	every := r.FullEvery
	if every <= 0 {
		every = DefaultFullMaintenanceEvery
	}
	last, err := time.Parse(time.RFC3339, br.Annotations[AnnotationLastFull])
	return err != nil || now.Sub(last) >= every
}

// record appends the run to status.recentMaintenance (keeping keepLatestMaintenance entries)
// and sets lastMaintenanceTime on success.
func (r *Reconciler) record(ctx context.Context, br *velerov1.BackupRepository, rec repository.MaintenanceRecord) error {
	start, end := metav1.NewTime(rec.Start.Truncate(time.Second)), metav1.NewTime(rec.End.Truncate(time.Second))
	entry := velerov1.BackupRepositoryMaintenanceStatus{Result: velerov1.BackupRepositoryMaintenanceSucceeded,
		StartTimestamp: &start, CompleteTimestamp: &end, Message: rec.Message}
	if !rec.Succeeded {
		entry.Result = velerov1.BackupRepositoryMaintenanceFailed
	}
	for _, m := range br.Status.RecentMaintenance {
		if m.Result == entry.Result && m.Message == entry.Message && m.StartTimestamp.Equal(entry.StartTimestamp) && m.CompleteTimestamp.Equal(entry.CompleteTimestamp) {
			return nil // recorded before a restart, which came before the Job was marked
		}
	}
	history := append(append([]velerov1.BackupRepositoryMaintenanceStatus{}, br.Status.RecentMaintenance...), entry)
	if keep := r.Config().KeepLatestMaintenance; len(history) > keep {
		history = history[len(history)-keep:]
	}
	fields := map[string]any{"recentMaintenance": history}
	if rec.Succeeded {
		fields["lastMaintenanceTime"] = end
	}
	return operation.PatchStatus(ctx, r.Client, br, fields)
}
