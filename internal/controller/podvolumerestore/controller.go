// Package podvolumerestore provides the node-agent's PodVolumeRestore controller: it writes a
// snapshot into a volume of a pod on its own node, through the kubelet's pods directory.
package podvolumerestore

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/nodeconfig"
	"github.com/ferry-backup/ferry/internal/onchange"
	"github.com/ferry-backup/ferry/internal/operation"
	"github.com/ferry-backup/ferry/internal/podvolume"
	"github.com/ferry-backup/ferry/internal/repoaccess"
	"github.com/ferry-backup/ferry/internal/restic"
)

// Least privilege: the operations and the Secrets, locations and ConfigMap of the install
// namespace only; claims and volumes are read one at a time, never listed or watched. Pods are
// watched only on this node (a spec.nodeName field selector), to start a restore once its pod
// is scheduled here and its volumes are mounted; any pod is read by name.
// The agent writes only the status of its operations, never their spec or metadata (under
// Velero's CRDs, which lack the status subresource, status is written through the object and
// the agent needs patch on it). Secrets: the repository password and the password the server
// last applied (repoaccess.PasswordSecret, AppliedPasswordSecret), by name; `ferry install
// --credential-secrets` adds the locations' storage credentials.
// +kubebuilder:rbac:groups=velero.io,resources=podvolumerestores,verbs=get;list;watch,namespace=velero
// +kubebuilder:rbac:groups=velero.io,resources=podvolumerestores/status,verbs=get;patch;update,namespace=velero
// +kubebuilder:rbac:groups=velero.io,resources=backupstoragelocations,verbs=get,namespace=velero
// +kubebuilder:rbac:groups=velero.io,resources=backuprepositories,verbs=get;list,namespace=velero
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get,resourceNames=velero-repo-credentials;ferry-applied-repo-credentials,namespace=velero
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=persistentvolumeclaims;persistentvolumes,verbs=get
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch,namespace=velero

// Reconciler runs PodVolumeRestores of one node.
type Reconciler struct {
	Client       client.Client
	Recorder     record.EventRecorder
	Clock        clock.PassiveClock
	Node         string
	Volumes      podvolume.Locator
	Repositories *repoaccess.Access
	// Restic runs the restic program for restores of Velero's restic backups.
	Restic restic.CLI
	Runner *operation.Runner
	Config func() nodeconfig.Config
}

// SetupWithManager registers the controller. Besides its PodVolumeRestores it watches the pods
// of this node that the manager's cache holds, and wakes the restores that target a pod when
// the pod changes.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &velerov1.PodVolumeRestore{}, podIndex, podOf); err != nil {
		return fmt.Errorf("index PodVolumeRestores by pod: %w", err)
	}
	onNode := predicate.NewPredicateFuncs(func(o client.Object) bool {
		pod, ok := o.(*corev1.Pod)
		return ok && pod.Spec.NodeName == r.Node
	})
	// Progress ticks of a running restore wake no agent: only creations, spec changes (cancel) and
	// phase changes do.
	changed := predicate.Or[client.Object](predicate.GenerationChangedPredicate{},
		onchange.Phase(func(p *velerov1.PodVolumeRestore) string { return string(p.Status.Phase) }))
	return ctrl.NewControllerManagedBy(mgr).For(&velerov1.PodVolumeRestore{}, builder.WithPredicates(changed)).
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(r.restoresOf), builder.WithPredicates(onNode)).
		Named("podvolumerestore").Complete(r)
}

// Reconcile moves one PodVolumeRestore along: New → (its pod is scheduled on this node and its
// volumes mounted) Accepted → InProgress → Completed, Failed or Canceled. The restore runs in the
// Runner; Reconcile only waits for the pod, starts or cancels it.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	pvr := &velerov1.PodVolumeRestore{}
	if err := r.Client.Get(ctx, req.NamespacedName, pvr); err != nil {
		if apierrors.IsNotFound(err) {
			r.Runner.CancelNamed(operationName(req.NamespacedName)) // deleted: its restore stops
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	node, waitFor, err := r.target(ctx, pvr)
	if err != nil {
		return ctrl.Result{}, err
	}
	if waitFor != "" && !pvr.Spec.Cancel {
		return r.wait(ctx, pvr, node, waitFor)
	}
	return ctrl.Result{}, r.Runner.Advance(ctx, r.reporter(), r.Node, operation.Request{
		Object: pvr, Node: node, Phase: pvr.Status.Phase, Cancel: pvr.Spec.Cancel, Attempts: pvr.Status.Attempts,
		Invalid:   operation.TimeoutErr(pvr.Spec.OperationTimeout),
		Accepted:  operation.Status{Node: r.Node},
		Operation: func() operation.Spec { return r.operation(pvr.DeepCopy()) },
	})
}

// operationName names a PodVolumeRestore's operation in the Runner.
func operationName(key types.NamespacedName) string { return "PodVolumeRestore " + key.String() }
