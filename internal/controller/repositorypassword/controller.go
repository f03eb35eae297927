// Package repositorypassword provides ferry-server's controller of the repository password: it
// creates the velero-repo-credentials Secret with a random password when there is none, and when
// a user changes the password it re-keys every repository to it before recording it as applied,
// so that nothing is stranded and no node-agent has to restart.
package repositorypassword

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/repoaccess"
)

// The Secrets are watched (the cache lists and watches every Secret of the install namespace:
// RBAC cannot narrow a list to two names); the server creates velero-repo-credentials when it is
// missing and updates only its own record of the applied password.
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create,namespace=velero
// +kubebuilder:rbac:groups="",resources=secrets,verbs=update,resourceNames=ferry-applied-repo-credentials,namespace=velero
// +kubebuilder:rbac:groups=velero.io,resources=backupstoragelocations,verbs=get;list;watch,namespace=velero
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch,namespace=velero

// Reconciler keeps repositories keyed with the Secret's password.
type Reconciler struct {
	Client       client.Client
	Recorder     record.EventRecorder
	Namespace    string
	Repositories *repoaccess.Access
}

// SetupWithManager registers the controller for the two Secrets and the locations.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	mine := predicate.NewPredicateFuncs(func(o client.Object) bool {
		return o.GetNamespace() == r.Namespace &&
			(o.GetName() == repoaccess.PasswordSecret || o.GetName() == repoaccess.AppliedPasswordSecret)
	})
	one := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{{NamespacedName: client.ObjectKey{Namespace: r.Namespace, Name: repoaccess.PasswordSecret}}}
	})
	// Locations wake it too: the first one appearing is when a missing Secret must be created.
	return ctrl.NewControllerManagedBy(mgr).Named("repositorypassword").
		Watches(&corev1.Secret{}, one, builder.WithPredicates(mine)).
		Watches(&velerov1.BackupStorageLocation{}, one).Complete(r)
}

// Reconcile makes sure the Secret exists and the repositories use its password.
func (r *Reconciler) Reconcile(ctx context.Context, _ ctrl.Request) (ctrl.Result, error) {
	user, err := r.secret(ctx, repoaccess.PasswordSecret)
	if apierrors.IsNotFound(err) {
		return ctrl.Result{}, r.generate(ctx)
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	wanted := string(user.Data[repoaccess.PasswordKey])
	if wanted == "" {
		r.Recorder.Eventf(user, corev1.EventTypeWarning, "InvalidPassword", "key %s is missing or empty; repositories keep their password", repoaccess.PasswordKey)
		return ctrl.Result{}, nil
	}
	applied, err := r.secret(ctx, repoaccess.AppliedPasswordSecret)
	if apierrors.IsNotFound(err) {
		return ctrl.Result{}, r.setApplied(ctx, nil, wanted) // first sight: the repositories use this password
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	old := string(applied.Data[repoaccess.PasswordKey])
	if old == wanted {
		return ctrl.Result{}, nil
	}
	rekeyed, readOnly, err := r.rekeyAll(ctx, old, wanted)
	if err != nil {
		r.Recorder.Eventf(user, corev1.EventTypeWarning, "RekeyFailed", "%v; the previous password stays applied and will be retried", err)
		return ctrl.Result{}, err
	}
	r.Recorder.Eventf(user, corev1.EventTypeNormal, "Rekeyed", "%d repositories now use the new password", rekeyed)
	log.FromContext(ctx).Info("repositories re-keyed to the new password", "repositories", rekeyed, "readOnlyKept", readOnly)
	// ReadOnly locations are never re-keyed: they keep the password they had, recorded per
	// location so that they can still be opened.
	for _, name := range readOnly {
		if _, ok := applied.Data[repoaccess.LocationPasswordKey(name)]; !ok {
			applied.Data[repoaccess.LocationPasswordKey(name)] = []byte(old)
		}
	}
	return ctrl.Result{}, r.setApplied(ctx, applied, wanted)
}

// rekeyAll re-keys every writable location's repository. The new password counts as applied
// only when all succeeded; until then node-agents open the rest with the applied password, and
// the controller retries with backoff.
func (r *Reconciler) rekeyAll(ctx context.Context, old, wanted string) (n int, readOnly []string, err error) {
	list := &velerov1.BackupStorageLocationList{}
	if err := r.Client.List(ctx, list, client.InNamespace(r.Namespace)); err != nil {
		return 0, nil, err
	}
	var errs []error
	for _, bsl := range list.Items {
		if bsl.Spec.AccessMode == velerov1.BackupStorageLocationAccessModeReadOnly {
			readOnly = append(readOnly, bsl.Name) // never written; it keeps the password it has
			continue
		}
		done, err := r.rekey(ctx, bsl.Name, old, wanted)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if done {
			n++
		}
	}
	return n, readOnly, errors.Join(errs...)
}

// RekeyLimit bounds the re-key of one location's repository, so that one hung store holds up
// neither the others nor the next try (Kopia's change is two small blob writes; an interrupted
// one is repaired by the next).
const RekeyLimit = 5 * time.Minute

func (r *Reconciler) rekey(ctx context.Context, location, old, wanted string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, RekeyLimit)
	defer cancel()
	done, err := r.Repositories.Rekey(ctx, location, old, wanted)
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("%w (gave up after %s)", err, RekeyLimit)
	}
	return done, err
}

func (r *Reconciler) secret(ctx context.Context, name string) (*corev1.Secret, error) {
	s := &corev1.Secret{}
	err := r.Client.Get(ctx, client.ObjectKey{Namespace: r.Namespace, Name: name}, s)
	return s, err
}

// generate creates the missing password Secret: with the password the repositories are keyed
// with when the server has applied one (a deleted Secret comes back as it was, so the copy users
// were told to keep goes on working), else with a random one.
func (r *Reconciler) generate(ctx context.Context) error {
	password, how := "", "a random password; back it up outside the cluster"
	applied, err := r.secret(ctx, repoaccess.AppliedPasswordSecret)
	switch {
	case err == nil && len(applied.Data[repoaccess.PasswordKey]) > 0:
		password, how = string(applied.Data[repoaccess.PasswordKey]), "the password the repositories are keyed with (it had been deleted)"
	case err != nil && !apierrors.IsNotFound(err):
		return err
	default:
		buf := make([]byte, 32)
		if _, err := rand.Read(buf); err != nil {
			return err
		}
		password = base64.StdEncoding.EncodeToString(buf)
	}
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: r.Namespace, Name: repoaccess.PasswordSecret},
		Data:       map[string][]byte{repoaccess.PasswordKey: []byte(password)},
	}
	if err := r.Client.Create(ctx, s); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create secret %s: %w", repoaccess.PasswordSecret, err)
	}
	log.FromContext(ctx).Info("created the repository password Secret with "+how, "secret", r.Namespace+"/"+repoaccess.PasswordSecret)
	return nil
}

// setApplied records password as applied, keeping the per-location passwords already recorded.
func (r *Reconciler) setApplied(ctx context.Context, existing *corev1.Secret, password string) error {
	data := map[string][]byte{repoaccess.PasswordKey: []byte(password)}
	if existing != nil {
		for k, v := range existing.Data {
			if k != repoaccess.PasswordKey {
				data[k] = v
			}
		}
		existing.Data = data
		return r.Client.Update(ctx, existing)
	}
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: r.Namespace, Name: repoaccess.AppliedPasswordSecret,
		Labels: map[string]string{"app.kubernetes.io/managed-by": "ferry-server"}}, Data: data}
	return client.IgnoreAlreadyExists(r.Client.Create(ctx, s))
}
