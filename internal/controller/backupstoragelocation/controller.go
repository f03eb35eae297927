// Package backupstoragelocation provides ferry-server's BackupStorageLocation controller: it
// checks that each location is reachable with its credentials (and writable unless ReadOnly),
// and keeps the result in the location's phase.
package backupstoragelocation

import (
	"context"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

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

// SetupWithManager registers the controller.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).For(&velerov1.BackupStorageLocation{}).Named("backupstoragelocation").Complete(r)
}

// Reconcile probes the location and records Available or Unavailable with the reason; it
// probes again after spec.validationFrequency (default 1m; 0 disables periodic checks).
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	bsl := &velerov1.BackupStorageLocation{}
	if err := r.Client.Get(ctx, req.NamespacedName, bsl); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	phase, msg := velerov1.BackupStorageLocationPhaseAvailable, ""
	if err := r.probe(ctx, bsl); err != nil {
		phase, msg = velerov1.BackupStorageLocationPhaseUnavailable, err.Error()
	}
	if phase != bsl.Status.Phase || msg != bsl.Status.Message {
		log.FromContext(ctx).Info("storage location checked", "backupStorageLocation", req.String(), "phase", phase, "message", msg)
	}
	now := metav1.NewTime(r.Clock.Now().Truncate(time.Second))
	err := operation.PatchStatus(ctx, r.Client, bsl, map[string]any{"phase": phase, "message": msg, "lastValidationTime": now})
	if err != nil {
		return ctrl.Result{}, err
	}
	every := DefaultValidationFrequency
	if f := bsl.Spec.ValidationFrequency; f != nil {
		every = f.Duration
	}
	if every <= 0 {
		return ctrl.Result{}, nil
	}
	return ctrl.Result{RequeueAfter: every}, nil
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
