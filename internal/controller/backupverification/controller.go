// Package backupverification provides ferry-server's backup verification: a Backup annotated
// ferry.io/verify-requested is verified in a Job of its own (`ferry-server verify`: every
// content of every volume snapshot looked up, a sample of the files read back and checked), and
// the result is recorded on the Backup (annotation ferry.io/last-verification, Events), on its
// location's BackupRepository and in metrics. A BackupRepository annotated ferry.io/verify-every
// has the latest completed backup of its location verified that often.
package backupverification

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/metrics"
	"github.com/ferry-backup/ferry/internal/nodeconfig"
)

// +kubebuilder:rbac:groups=velero.io,resources=backups,verbs=get;list;watch;patch,namespace=velero
// +kubebuilder:rbac:groups=velero.io,resources=backuprepositories,verbs=get;list;watch;patch,namespace=velero
// +kubebuilder:rbac:groups=batch,resources=jobs,verbs=get;list;watch;create;patch;delete,namespace=velero
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list,namespace=velero
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get,resourceNames=ferry-server,namespace=velero
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch,namespace=velero

// Reconciler runs the verifications Backups ask for and records their results.
type Reconciler struct {
	Client   client.Client
	Recorder record.EventRecorder
	Clock    clock.PassiveClock
	// Config returns the node-agent ConfigMap's values: verification Jobs take the deadline and
	// resources of maintenance Jobs (maintenanceJobTimeout, maintenanceJobResources).
	Config func() nodeconfig.Config
	// Pods reads the Jobs' pods and the server's Deployment, uncached.
	Pods client.Reader
	// ServerDeployment names the server's Deployment, whose pod verification Jobs copy.
	ServerDeployment string
}

// SetupWithManager registers the controller: a new request wakes it, and its Jobs' changes.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	requested := func(o client.Object) bool { return o.GetAnnotations()[velerov1.AnnotationVerifyRequested] != "" }
	return ctrl.NewControllerManagedBy(mgr).
		For(&velerov1.Backup{}, builder.WithPredicates(predicate.Funcs{
			CreateFunc: func(e event.CreateEvent) bool { return requested(e.Object) },
			UpdateFunc: func(e event.UpdateEvent) bool {
				return e.ObjectNew.GetAnnotations()[velerov1.AnnotationVerifyRequested] != e.ObjectOld.GetAnnotations()[velerov1.AnnotationVerifyRequested]
			},
			DeleteFunc:  func(event.DeleteEvent) bool { return false },
			GenericFunc: func(event.GenericEvent) bool { return false },
		})).
		Owns(&batchv1.Job{}).Named("backupverification").Complete(r)
}

// Reconcile records the results of the backup's finished verification Jobs, then starts the Job
// of a request that has none yet. One Job at a time per backup.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	b := &velerov1.Backup{}
	if err := r.Client.Get(ctx, req.NamespacedName, b); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	running, err := r.recordJobs(ctx, b)
	if err != nil || running {
		return ctrl.Result{}, err
	}
	value := b.Annotations[velerov1.AnnotationVerifyRequested]
	if last, ok := lastVerification(b.Annotations); value == "" || (ok && last.Request == value) {
		return ctrl.Result{}, nil
	}
	start := r.Clock.Now()
	refuse := func(why string) (ctrl.Result, error) {
		res := velerov1.BackupVerification{Request: value, Backup: b.Name, Start: start, End: start, Message: why}
		return ctrl.Result{}, r.record(ctx, b, locationOf(b), res)
	}
	request, err := ParseRequest(value)
	if err != nil {
		return refuse(err.Error())
	}
	if b.Status.Phase != velerov1.BackupPhaseCompleted && b.Status.Phase != velerov1.BackupPhasePartiallyFailed {
		return refuse(fmt.Sprintf("backup %s is %q: only Completed and PartiallyFailed backups can be verified", b.Name, b.Status.Phase))
	}
	location := locationOf(b)
	if location == "" {
		return refuse(fmt.Sprintf("backup %s names no storage location", b.Name))
	}
	job, err := r.newJob(ctx, b, location, request, value)
	if err != nil {
		return refuse("the verification cannot start: " + err.Error())
	}
	if err := r.Client.Create(ctx, job); err != nil {
		return ctrl.Result{}, fmt.Errorf("create a verification Job for backup %s: %w", b.Name, err)
	}
	log.FromContext(ctx).Info("verification started", "backup", b.Name, "job", job.Name, "percent", request.Percent)
	return ctrl.Result{}, nil
}

// locationOf names the backup's storage location: its spec (the server fills it when the
// backup starts) or the label backup sync sets.
func locationOf(b *velerov1.Backup) string {
	if b.Spec.StorageLocation != "" {
		return b.Spec.StorageLocation
	}
	return b.Labels[velerov1.LabelStorageLocation]
}

// record writes the result onto the Backup and its location's BackupRepositories, emits the
// backup's Events and sets the location's metrics.
func (r *Reconciler) record(ctx context.Context, b *velerov1.Backup, location string, res velerov1.BackupVerification) error {
	data, err := json.Marshal(res)
	if err != nil {
		return err
	}
	patch := client.MergeFrom(b.DeepCopy())
	metav1.SetMetaDataAnnotation(&b.ObjectMeta, velerov1.AnnotationLastVerification, string(data))
	if err := r.Client.Patch(ctx, b, patch); err != nil {
		return fmt.Errorf("record the verification of backup %s: %w", b.Name, err)
	}
	r.events(b, res)
	log.FromContext(ctx).Info("verification recorded", "backup", b.Name, "job", res.Job, "errors", res.Errors, "completed", res.Completed)
	if location == "" {
		return nil
	}
	outcome := "Verified"
	switch {
	case !res.Completed:
		outcome = "Incomplete"
	case res.Errors > 0:
		outcome = "Damaged"
	}
	metrics.Verifications.WithLabelValues(location, outcome).Inc()
	if res.Job != "" {
		metrics.VerificationErrors.WithLabelValues(location).Set(float64(res.Errors))
		metrics.VerificationTime.WithLabelValues(location).Set(float64(res.End.Unix()))
	}
	repos := &velerov1.BackupRepositoryList{}
	if err := r.Client.List(ctx, repos, client.InNamespace(b.Namespace)); err != nil {
		return err
	}
	var errs []error
	for i := range repos.Items {
		br := &repos.Items[i]
		if br.Spec.BackupStorageLocation != location {
			continue
		}
		patch := client.MergeFrom(br.DeepCopy())
		metav1.SetMetaDataAnnotation(&br.ObjectMeta, velerov1.AnnotationLastVerification, string(data))
		errs = append(errs, client.IgnoreNotFound(r.Client.Patch(ctx, br, patch)))
	}
	return errors.Join(errs...)
}

// events are a Warning per damaged volume and one for a verification that could not verify
// everything, or one Normal Event for a clean verification.
func (r *Reconciler) events(b *velerov1.Backup, res velerov1.BackupVerification) {
	var files, read, bytes int64
	for _, v := range res.Volumes {
		files, read, bytes = files+v.Files, read+v.FilesRead, bytes+v.BytesRead
		if v.Errors > 0 {
			r.Recorder.Eventf(b, corev1.EventTypeWarning, "VerificationFailed", "volume %s (snapshot %s): %d damaged entries: %s",
				v.Volume, v.SnapshotID, v.Errors, strings.Join(v.FirstErrors, "; "))
		}
	}
	if !res.Completed {
		r.Recorder.Eventf(b, corev1.EventTypeWarning, "VerificationIncomplete", "not every volume could be verified: %s", res.Message)
	}
	if !res.Failed() {
		r.Recorder.Eventf(b, corev1.EventTypeNormal, "Verified", "%d volumes, %d files checked, %d files (%d bytes) read back: no damage found",
			len(res.Volumes), files, read, bytes)
	}
}
