// Package backupstoragelocation provides ferry-server's BackupStorageLocation controller: it
// checks that each location is reachable with its credentials (and writable unless ReadOnly),
// and keeps the result in the location's phase.
package backupstoragelocation

import (
	"context"
	"errors"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/operation"
	"github.com/ferry-backup/ferry/internal/repoaccess"
	"github.com/ferry-backup/ferry/internal/repository"
)

// +kubebuilder:rbac:groups=velero.io,resources=backupstoragelocations,verbs=get;list;watch,namespace=velero
// +kubebuilder:rbac:groups=velero.io,resources=backupstoragelocations/status,verbs=get;patch;update,namespace=velero
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get,namespace=velero

// Defaults.
const (
	DefaultValidationFrequency = time.Minute
	probeTimeout               = 30 * time.Second
)

// Reconciler validates locations.
type Reconciler struct {
	Client       client.Client
	Clock        clock.PassiveClock
	Repositories *repoaccess.Access
}

// SetupWithManager registers the controller. Only spec changes (and creations) wake it: its own
// status writes do not, and the next check comes from the requeue Reconcile asks for.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).For(&velerov1.BackupStorageLocation{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Named("backupstoragelocation").Complete(r)
}

// Reconcile probes the location and records Available or Unavailable with the reason. It probes
// when the spec changed since the last check or spec.validationFrequency (default 1m; 0 disables
// periodic checks) has passed since status.lastValidationTime, and comes back when the next check
// is due.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	bsl := &velerov1.BackupStorageLocation{}
	if err := r.Client.Get(ctx, req.NamespacedName, bsl); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if err := durationErr(bsl); err != nil {
		// Not probed, not used (a backup to it fails saying why) until the spec is fixed; that
		// change wakes this controller again.
		return ctrl.Result{}, r.record(ctx, bsl, velerov1.BackupStorageLocationPhaseUnavailable, err.Error())
	}
	every := DefaultValidationFrequency
	if f := bsl.Spec.ValidationFrequency; f != nil {
		every = f.Duration
	}
	if wait, due := r.nextCheck(bsl, every); !due {
		return ctrl.Result{RequeueAfter: wait}, nil
	}
	phase, msg := velerov1.BackupStorageLocationPhaseAvailable, ""
	if err := r.probe(ctx, bsl); err != nil {
		phase, msg = velerov1.BackupStorageLocationPhaseUnavailable, err.Error()
	}
	if err := r.record(ctx, bsl, phase, msg); err != nil || every <= 0 {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: every}, nil
}

// durationErr reports the spec's durations that are not durations (possible under Velero's
// CRDs, which do not check them).
func durationErr(bsl *velerov1.BackupStorageLocation) error {
	var errs []error
	if d := bsl.Spec.ValidationFrequency; d != nil {
		errs = append(errs, d.Err("spec.validationFrequency"))
	}
	if d := bsl.Spec.BackupSyncPeriod; d != nil {
		errs = append(errs, d.Err("spec.backupSyncPeriod"))
	}
	return errors.Join(errs...)
}

// record writes the outcome of a check.
func (r *Reconciler) record(ctx context.Context, bsl *velerov1.BackupStorageLocation, phase velerov1.BackupStorageLocationPhase, msg string) error {
	if phase != bsl.Status.Phase || msg != bsl.Status.Message {
		log.FromContext(ctx).Info("storage location checked", "backupStorageLocation", bsl.Namespace+"/"+bsl.Name, "phase", phase, "message", msg)
	}
	now := metav1.NewTime(r.Clock.Now().Truncate(time.Second))
	return operation.PatchStatus(ctx, r.Client, bsl, map[string]any{"phase": phase, "message": msg, "lastValidationTime": now,
		"observedGeneration": bsl.Generation})
}

// nextCheck says whether a check is due and, if not, how long until it is (0: never, only
// after a spec change).
func (r *Reconciler) nextCheck(bsl *velerov1.BackupStorageLocation, every time.Duration) (time.Duration, bool) {
	last := bsl.Status.LastValidationTime
	if last == nil || bsl.Status.ObservedGeneration != bsl.Generation {
		return 0, true
	}
	if every <= 0 {
		return 0, false
	}
	elapsed := r.Clock.Now().Sub(last.Time)
	if elapsed >= every {
		return 0, true
	}
	return every - elapsed, false
}

func (r *Reconciler) probe(ctx context.Context, bsl *velerov1.BackupStorageLocation) error {
	loc, err := r.Repositories.LocationOf(ctx, bsl)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	write := bsl.Spec.AccessMode != velerov1.BackupStorageLocationAccessModeReadOnly
	return repository.Probe(ctx, loc, write)
}
