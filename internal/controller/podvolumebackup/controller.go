// Package podvolumebackup provides the node-agent's PodVolumeBackup controller: it backs up the
// pod volumes of its own node, read through the kubelet's pods directory, into the repository
// of the backup's storage location.
package podvolumebackup

import (
	"context"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/nodeconfig"
	"github.com/ferry-backup/ferry/internal/onchange"
	"github.com/ferry-backup/ferry/internal/operation"
	"github.com/ferry-backup/ferry/internal/podvolume"
	"github.com/ferry-backup/ferry/internal/repoaccess"
)

// Least privilege: the operations and the Secrets, locations and ConfigMap of the install
// namespace only; pods, claims and volumes are read one at a time, never listed or watched.
// The agent writes only the status of its operations, never their spec or metadata (under
// Velero's CRDs, which lack the status subresource, status is written through the object and
// the agent needs patch on it). Secrets: the repository password and the password the server
// last applied (repoaccess.PasswordSecret, AppliedPasswordSecret), by name; `ferry install
// --credential-secrets` adds the locations' storage credentials.
// +kubebuilder:rbac:groups=velero.io,resources=podvolumebackups,verbs=get;list;watch,namespace=velero
// +kubebuilder:rbac:groups=velero.io,resources=podvolumebackups/status,verbs=get;patch;update,namespace=velero
// +kubebuilder:rbac:groups=velero.io,resources=backupstoragelocations,verbs=get,namespace=velero
// +kubebuilder:rbac:groups=velero.io,resources=backuprepositories,verbs=get;list,namespace=velero
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get,resourceNames=velero-repo-credentials;ferry-applied-repo-credentials,namespace=velero
// +kubebuilder:rbac:groups="",resources=pods;persistentvolumeclaims;persistentvolumes,verbs=get
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch,namespace=velero

// Reconciler runs PodVolumeBackups of one node.
type Reconciler struct {
	Client   client.Client
	Recorder record.EventRecorder
	Clock    clock.PassiveClock
	// Node is this node's name.
	Node string
	// Volumes finds pod volumes on this node.
	Volumes podvolume.Locator
	// Repositories opens the repositories of storage locations.
	Repositories *repoaccess.Access
	// Runner runs the backups, at most Config().ConcurrentRepoOperations at once.
	Runner *operation.Runner
	// Config returns the node-agent ConfigMap's current values.
	Config func() nodeconfig.Config
}

// SetupWithManager registers the controller. Only this node's PodVolumeBackups wake it (under
// Velero's CRDs the cache cannot be filtered by spec.node and holds every node's), and only when
// created, their spec changed (cancel) or their phase: not at each progress tick.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	onNode := predicate.NewPredicateFuncs(func(o client.Object) bool {
		pvb, ok := o.(*velerov1.PodVolumeBackup)
		return ok && pvb.Spec.Node == r.Node
	})
	changed := predicate.Or[client.Object](predicate.GenerationChangedPredicate{},
		onchange.Phase(func(p *velerov1.PodVolumeBackup) string { return string(p.Status.Phase) }))
	return ctrl.NewControllerManagedBy(mgr).For(&velerov1.PodVolumeBackup{}, builder.WithPredicates(onNode, changed)).
		Named("podvolumebackup").Complete(r)
}

// Reconcile moves one PodVolumeBackup along: New → Accepted → InProgress → Completed, Failed or
// Canceled. The backup itself runs in the Runner; Reconcile only starts or cancels it.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	pvb := &velerov1.PodVolumeBackup{}
	if err := r.Client.Get(ctx, req.NamespacedName, pvb); err != nil {
		if apierrors.IsNotFound(err) {
			r.Runner.CancelNamed(operationName(req.NamespacedName)) // deleted: its backup stops
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	return ctrl.Result{}, r.Runner.Advance(ctx, r.reporter(), r.Node, operation.Request{
		Object: pvb, Node: pvb.Spec.Node, Phase: pvb.Status.Phase, Cancel: pvb.Spec.Cancel, Attempts: pvb.Status.Attempts,
		Invalid:   operation.TimeoutErr(pvb.Spec.OperationTimeout),
		Operation: func() operation.Spec { return r.operation(pvb.DeepCopy()) },
	})
}

// operationName names a PodVolumeBackup's operation in the Runner.
func operationName(key types.NamespacedName) string { return "PodVolumeBackup " + key.String() }
