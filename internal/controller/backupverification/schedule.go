package backupverification

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
)

// retryNoBackup is how soon a schedule with no completed backup to verify looks again.
const retryNoBackup = time.Hour

// Scheduler asks, on the schedule a BackupRepository's ferry.io/verify-every sets, for the
// verification of the latest completed backup of its location, by annotating that Backup as a
// user would: the Reconciler runs it and records the result on the BackupRepository too.
type Scheduler struct {
	Client client.Client
	Clock  clock.PassiveClock
}

// SetupWithManager registers the scheduler: creations and annotation changes of
// BackupRepositories wake it; afterwards it comes back when the next verification is due.
func (s *Scheduler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).For(&velerov1.BackupRepository{}, builder.WithPredicates(predicate.AnnotationChangedPredicate{})).
		Named("backupverification-schedule").Complete(s)
}

// Reconcile requests the verification that is due and says when to come back.
func (s *Scheduler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	br := &velerov1.BackupRepository{}
	if err := s.Client.Get(ctx, req.NamespacedName, br); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	every, percent, err := verifySchedule(br.Annotations)
	if err != nil {
		// Nothing to retry until the annotation changes, which wakes this again.
		log.FromContext(ctx).Info("verification schedule ignored", "backupRepository", br.Name, "reason", err.Error())
		return ctrl.Result{}, nil
	}
	if every <= 0 {
		return ctrl.Result{}, nil
	}
	backups := &velerov1.BackupList{}
	if err := s.Client.List(ctx, backups, client.InNamespace(br.Namespace)); err != nil {
		return ctrl.Result{}, err
	}
	var latest *velerov1.Backup
	for i := range backups.Items {
		b := &backups.Items[i]
		if b.Status.Phase != velerov1.BackupPhaseCompleted || locationOf(b) != br.Spec.BackupStorageLocation || b.Status.CompletionTimestamp == nil || b.DeletionTimestamp != nil {
			continue
		}
		if latest == nil || b.Status.CompletionTimestamp.After(latest.Status.CompletionTimestamp.Time) {
			latest = b
		}
	}
	if latest == nil {
		return ctrl.Result{RequeueAfter: min(every, retryNoBackup)}, nil
	}
	// The last verification is the repository's last result or the latest backup's pending
	// request, whichever is newer.
	var last time.Time
	if v, ok := lastVerification(br.Annotations); ok {
		last = v.End
	}
	if r, err := ParseRequest(latest.Annotations[velerov1.AnnotationVerifyRequested]); err == nil && r.At.After(last) {
		last = r.At
	}
	now := s.Clock.Now()
	if wait := last.Add(every).Sub(now); wait > 0 {
		return ctrl.Result{RequeueAfter: wait}, nil
	}
	patch := client.MergeFrom(latest.DeepCopy())
	metav1.SetMetaDataAnnotation(&latest.ObjectMeta, velerov1.AnnotationVerifyRequested, FormatRequest(percent, now))
	if err := s.Client.Patch(ctx, latest, patch); err != nil {
		return ctrl.Result{}, fmt.Errorf("request the verification of backup %s: %w", latest.Name, err)
	}
	log.FromContext(ctx).Info("verification requested", "backupRepository", br.Name, "backup", latest.Name, "percent", percent)
	return ctrl.Result{RequeueAfter: every}, nil
}

// verifySchedule reads ferry.io/verify-every and ferry.io/verify-percent.
func verifySchedule(annotations map[string]string) (every time.Duration, percent float64, err error) {
	percent = DefaultPercent
	if s := strings.TrimSpace(annotations[velerov1.AnnotationVerifyEvery]); s != "" {
		if every, err = time.ParseDuration(s); err != nil {
			return 0, 0, fmt.Errorf("annotation %s=%q: not a duration such as 168h", velerov1.AnnotationVerifyEvery, s)
		}
	}
	if s := strings.TrimSpace(annotations[velerov1.AnnotationVerifyPercent]); s != "" {
		if percent, err = strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64); err != nil || percent < 0 || percent > 100 {
			return 0, 0, fmt.Errorf("annotation %s=%q: want a number from 0 to 100", velerov1.AnnotationVerifyPercent, s)
		}
	}
	return every, percent, nil
}
