// Package schedule provides ferry-server's Schedule controller: at the times of a Schedule's
// cron expression it creates a Backup from the schedule's template, never while an earlier
// Backup of the schedule still runs, and once for all the times missed while the server was
// down.
package schedule

import (
	"context"
	"errors"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
)

// The server creates Backups from Schedules and sets spec.skipImmediately back to false once
// it has been used (as Velero does).
// +kubebuilder:rbac:groups=velero.io,resources=schedules,verbs=get;list;watch;patch,namespace=velero
// +kubebuilder:rbac:groups=velero.io,resources=schedules/status,verbs=get;patch;update,namespace=velero
// +kubebuilder:rbac:groups=velero.io,resources=backups,verbs=get;list;watch;create,namespace=velero
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch,namespace=velero

// Reconciler runs Schedules.
type Reconciler struct {
	Client   client.Client
	Recorder record.EventRecorder
	Clock    clock.PassiveClock
}

// SetupWithManager registers the controller. It wakes on a schedule's creation and spec
// changes, not on its own status writes; between them each pass asks to be woken at the
// schedule's next time.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&velerov1.Schedule{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Named("schedule").Complete(r)
}

// Reconcile validates the schedule (New → Enabled or FailedValidation), creates its Backup
// when one is due, and asks to be woken at the next time. The status is patched once, at the
// end; a used spec.skipImmediately is set back to false after that.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	s := &velerov1.Schedule{}
	if err := r.Client.Get(ctx, req.NamespacedName, s); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !s.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	before := s.DeepCopy()
	res, err := r.reconcile(ctx, s)
	if !equality.Semantic.DeepEqual(before.Status, s.Status) {
		if perr := r.Client.Status().Patch(ctx, s, client.MergeFrom(before)); perr != nil {
			return ctrl.Result{}, errors.Join(err, perr)
		}
	}
	if err == nil && skipsImmediately(s) {
		// After the status holds lastSkipped: a crash in between skips again, never runs.
		patch := client.MergeFrom(s.DeepCopy())
		s.Spec.SkipImmediately = ptr.To(false)
		err = r.Client.Patch(ctx, s, patch)
	}
	return res, err
}

func (r *Reconciler) reconcile(ctx context.Context, s *velerov1.Schedule) (ctrl.Result, error) {
	now := r.Clock.Now()
	sched, problems := validate(s, now)
	if len(problems) > 0 {
		if s.Status.Phase != velerov1.SchedulePhaseFailedValidation || !slices.Equal(s.Status.ValidationErrors, problems) {
			r.Recorder.Eventf(s, corev1.EventTypeWarning, string(velerov1.SchedulePhaseFailedValidation), "%v", problems)
			log.FromContext(ctx).Info("schedule failed validation", "schedule", s.Name, "problems", problems)
		}
		s.Status.Phase, s.Status.ValidationErrors = velerov1.SchedulePhaseFailedValidation, problems
		return ctrl.Result{}, nil // a spec change wakes it
	}
	s.Status.Phase, s.Status.ValidationErrors = velerov1.SchedulePhaseEnabled, nil
	if s.Spec.Paused {
		return ctrl.Result{}, nil // unpausing is a spec change
	}
	at := metav1.NewTime(now.Truncate(time.Second))
	if skipsImmediately(s) {
		s.Status.LastSkipped = &at
		r.Recorder.Eventf(s, corev1.EventTypeNormal, "Skipped", "spec.skipImmediately: a run due now is skipped; the next is at %s",
			sched.Next(at.Time.UTC()).Format(time.RFC3339))
	} else if due := latestDue(sched, baseline(s), now); !due.IsZero() {
		if err := r.run(ctx, s, sched, due, at); err != nil {
			return ctrl.Result{}, err
		}
	}
	next := sched.Next(baseline(s))
	if next.IsZero() {
		return ctrl.Result{}, nil
	}
	return ctrl.Result{RequeueAfter: max(next.Sub(now), time.Second)}, nil
}

// skipsImmediately tells whether this pass uses spec.skipImmediately: an enabled schedule that
// is not paused (a paused one keeps it for its unpausing).
func skipsImmediately(s *velerov1.Schedule) bool {
	return ptr.Deref(s.Spec.SkipImmediately, false) && !s.Spec.Paused && s.Status.Phase == velerov1.SchedulePhaseEnabled
}
