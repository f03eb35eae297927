// Package exposer provides what the CSI data mover path puts between a volume and its mover: a
// DataUpload's VolumeSnapshot taken over into the install namespace, a volume created from it
// and the mover pod that reads it; a DataDownload's fresh volume, modelled on its target claim,
// and the mover pod that fills it, then handed over to that claim. Every object it makes is
// named after the operation and labelled with its UID, so making it twice is harmless and
// cleaning up finds all of it.
package exposer

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/credentialfiles"
)

// LabelOperation is on every object made for a data movement: the UID of its DataUpload or
// DataDownload.
const LabelOperation = "ferry.io/data-movement"

// Finalizer keeps a DataUpload or DataDownload until what was made for it is gone.
const Finalizer = "ferry.io/data-movement-cleanup"

// LabelDynamicPVRestore is the label a restored claim selects its volume by (Velero's): a claim
// with a selector is not provisioned dynamically, and the volume that gets the label and the
// claim's reference binds to it.
const LabelDynamicPVRestore = velerov1.LabelDynamicPVRestore

// annotationReclaimPolicy keeps a restored volume's reclaim policy while it is retained for the
// hand-over.
const annotationReclaimPolicy = "ferry.io/reclaim-policy"

// ErrPermanent marks failures that waiting does not cure: the operation fails with them.
var ErrPermanent = errors.New("cannot be exposed")

func permanent(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrPermanent, fmt.Sprintf(format, args...))
}

// Mover describes the mover pods.
type Mover struct {
	// Image holds /ferry-datamover.
	Image      string
	PullPolicy corev1.PullPolicy
	// ServiceAccount is the pods' ServiceAccount.
	ServiceAccount string
	Resources      corev1.ResourceRequirements
	// WorkDirSizeLimit bounds the emptyDir of Kopia's caches; nil: no bound.
	WorkDirSizeLimit *resource.Quantity
	// Credentials are the node-agent's own credential files (in place of Velero's node-agent:
	// Velero's cloud-credentials), which the mover pods get too, as Velero's do.
	Credentials credentialfiles.Files
}

// DefaultMoverResources are a mover pod's requests and limits: like the node-agent's (a mover runs
// one operation of the same uploader), with no CPU limit, since throttling only makes it slower.
func DefaultMoverResources() corev1.ResourceRequirements {
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m"), corev1.ResourceMemory: resource.MustParse("384Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("2Gi")},
	}
}

// DefaultMoverWorkDirSizeLimit bounds a mover pod's Kopia caches (one location: about 1 GiB).
func DefaultMoverWorkDirSizeLimit() *resource.Quantity {
	q := resource.MustParse("2Gi")
	return &q
}

// Exposer makes and removes the objects of data movements in Namespace.
type Exposer struct {
	Client    client.Client
	Namespace string
	Mover     Mover
}

// Operation is one data movement as the exposer sees it.
type Operation struct {
	// Owner is the DataUpload or DataDownload.
	Owner client.Object
	// Upload is true for a DataUpload.
	Upload bool
	// Parallel is the number of files the mover reads or writes at once; 0: its default.
	Parallel int
	// Resources are the mover pod's requests and limits; nil: Mover.Resources.
	Resources *corev1.ResourceRequirements
}

func (o Operation) name() string { return o.Owner.GetName() }

func (o Operation) labels() map[string]string {
	return map[string]string{LabelOperation: string(o.Owner.GetUID()), "app.kubernetes.io/part-of": "ferry"}
}

func (e *Exposer) meta(op Operation) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: e.Namespace, Name: op.name(), Labels: op.labels()}
}

// ownedMeta is meta with op's owner as controller: the garbage collector removes what is left
// should the owner go without its finalizer.
func (e *Exposer) ownedMeta(op Operation) metav1.ObjectMeta {
	m := e.meta(op)
	gvk := op.Owner.GetObjectKind().GroupVersionKind()
	yes := true
	m.OwnerReferences = []metav1.OwnerReference{{APIVersion: gvk.GroupVersion().String(), Kind: gvk.Kind,
		Name: op.Owner.GetName(), UID: op.Owner.GetUID(), Controller: &yes}}
	return m
}

// create creates obj unless it exists.
func (e *Exposer) create(ctx context.Context, obj client.Object) error {
	if err := e.Client.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create %T %s: %w", obj, client.ObjectKeyFromObject(obj), err)
	}
	return nil
}

// remove deletes obj, reporting whether it is gone already.
func (e *Exposer) remove(ctx context.Context, obj client.Object) (gone bool, err error) {
	err = e.Client.Delete(ctx, obj, client.PropagationPolicy(metav1.DeletePropagationBackground))
	if apierrors.IsNotFound(err) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("delete %T %s: %w", obj, client.ObjectKeyFromObject(obj), err)
	}
	return false, nil
}

// claim returns the operation's volume claim in the install namespace.
func (e *Exposer) claim(ctx context.Context, op Operation) (*corev1.PersistentVolumeClaim, error) {
	pvc := &corev1.PersistentVolumeClaim{}
	err := e.Client.Get(ctx, client.ObjectKey{Namespace: e.Namespace, Name: op.name()}, pvc)
	return pvc, err
}
