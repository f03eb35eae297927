// Package datamovement provides the node-agent's DataUpload and DataDownload controllers: the CSI
// data mover path. One lifecycle serves both kinds: New → Accepted (exactly one agent wins, by an
// update conditional on the object's version) → the exposer takes the snapshot over (or makes
// the restore volume) and starts one mover pod → Prepared once it runs (status.node = its node)
// → InProgress when that node's agent has a slot (the node's count of running operations) →
// Completed, Failed or Canceled from the mover's result → cleanup of everything made for it,
// held by a finalizer. Uploads and downloads differ only in what is exposed.
package datamovement

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	velerov2alpha1 "github.com/ferry-backup/ferry/api/v2alpha1"
	"github.com/ferry-backup/ferry/internal/exposer"
	"github.com/ferry-backup/ferry/internal/nodeconfig"
	"github.com/ferry-backup/ferry/internal/operation"
)

// The agent accepts, exposes and watches data movements of the install namespace, and makes and
// removes their snapshots, volumes and mover pods. Snapshots of applications' claims are read and
// deleted where the server made them; claims are read in the application's namespace (a restore's
// target) and made in the install namespace; volumes are handed over to their target claims.
// +kubebuilder:rbac:groups=velero.io,resources=datauploads;datadownloads,verbs=get;list;watch;update;patch,namespace=velero
// +kubebuilder:rbac:groups=velero.io,resources=datauploads/status;datadownloads/status,verbs=get;update;patch,namespace=velero
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch;create;delete,namespace=velero
// +kubebuilder:rbac:groups="",resources=events,verbs=list;watch,namespace=velero
// +kubebuilder:rbac:groups="",resources=persistentvolumeclaims,verbs=create;delete,namespace=velero
// +kubebuilder:rbac:groups="",resources=persistentvolumes,verbs=list;patch;delete
// +kubebuilder:rbac:groups=snapshot.storage.k8s.io,resources=volumesnapshots,verbs=get;delete
// +kubebuilder:rbac:groups=snapshot.storage.k8s.io,resources=volumesnapshots,verbs=create,namespace=velero
// +kubebuilder:rbac:groups=snapshot.storage.k8s.io,resources=volumesnapshotcontents,verbs=get;create;patch;delete

// requeue is how soon an operation waiting on something not watched (a snapshot getting ready, a
// volume being released) is looked at again.
const requeue = 2 * time.Second

// Reconciler runs one kind of data movement (DataUpload or DataDownload) for this node.
type Reconciler struct {
	// Client reads the operations, mover pods and their Events from the cache.
	Client   client.Client
	Recorder record.EventRecorder
	Clock    clock.PassiveClock
	// Node is this node's name.
	Node string
	// Upload selects DataUploads; otherwise DataDownloads.
	Upload bool
	// Exposer makes and removes what the movements need.
	Exposer *exposer.Exposer
	// Runner holds the node's slots: a running mover counts like a file-system operation.
	Runner *operation.Runner
	// Config returns the node-agent ConfigMap's current values.
	Config func() nodeconfig.Config
	// DataMovers are the values of spec.datamover whose operations this agent moves ("velero"
	// also stands for the empty value, Velero's default); none means ferry only. In place of
	// Velero's node-agent it moves Velero's too, as nobody else will.
	DataMovers []string

	nudges sync.Map // UID → chan struct{}: wakes a running operation's watch loop
}

// moves reports whether this agent moves operations whose spec.datamover is dataMover.
func (r *Reconciler) moves(dataMover string) bool {
	if dataMover == "" {
		dataMover = velerov2alpha1.DataMoverVelero
	}
	if len(r.DataMovers) == 0 {
		return dataMover == velerov2alpha1.DataMoverFerry
	}
	return slices.Contains(r.DataMovers, dataMover)
}

func (r *Reconciler) newObject() client.Object {
	if r.Upload {
		return &velerov2alpha1.DataUpload{}
	}
	return &velerov2alpha1.DataDownload{}
}

func (r *Reconciler) kind() string {
	if r.Upload {
		return "DataUpload"
	}
	return "DataDownload"
}

// SetupWithManager registers the controller: the operations, their mover pods and the mover
// pods' Events. Only this agent's mover pods count: the pod cache also holds every pod of other
// namespaces on this node, among them the mover pods of another data mover (Velero's own, with
// owner references to DataUploads in Velero's namespace), which this agent must not map to
// operations it does not watch.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	ours := predicate.NewPredicateFuncs(r.isOwnMoverPod)
	ownerOf := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, obj client.Object) []ctrl.Request {
		ev, ok := obj.(*corev1.Event)
		if !ok || ev.InvolvedObject.Kind != r.kind() {
			return nil
		}
		return []ctrl.Request{{NamespacedName: types.NamespacedName{Namespace: ev.InvolvedObject.Namespace, Name: ev.InvolvedObject.Name}}}
	})
	return ctrl.NewControllerManagedBy(mgr).For(r.newObject()).Named(map[bool]string{true: "dataupload", false: "datadownload"}[r.Upload]).
		Owns(&corev1.Pod{}, builder.WithPredicates(ours)).Watches(&corev1.Event{}, ownerOf).Complete(r)
}

// isOwnMoverPod reports whether a pod is one of this agent's mover pods: in its namespace and
// labelled by its exposer.
func (r *Reconciler) isOwnMoverPod(pod client.Object) bool {
	_, mover := pod.GetLabels()[exposer.LabelOperation]
	return mover && pod.GetNamespace() == r.Exposer.Namespace
}

// Reconcile moves one operation along; the data movement itself is watched in the Runner.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	obj := r.newObject()
	if err := r.Client.Get(ctx, req.NamespacedName, obj); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	v := viewOf(obj)
	if !r.moves(v.dataMover) {
		return ctrl.Result{}, nil // another data mover's (Velero's own node-agent moves Velero's)
	}
	if obj.GetDeletionTimestamp() != nil || v.phase.Terminal() {
		return r.end(ctx, v)
	}
	if v.cancel {
		return ctrl.Result{}, r.cancel(ctx, v)
	}
	switch v.phase {
	case "", velerov2alpha1.DataMovePhaseNew:
		return r.accept(ctx, v)
	case velerov2alpha1.DataMovePhaseAccepted:
		if v.acceptedBy == r.Node {
			return r.prepare(ctx, v)
		}
	case velerov2alpha1.DataMovePhasePrepared, velerov2alpha1.DataMovePhaseInProgress:
		if v.node == r.Node {
			r.run(v)
		}
	}
	return ctrl.Result{}, nil
}

// end cleans up after an ended or deleted operation, then lets it go.
func (r *Reconciler) end(ctx context.Context, v view) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(v.obj, exposer.Finalizer) || (v.owner() != r.Node && v.owner() != "") {
		return ctrl.Result{}, nil
	}
	if r.Runner.Cancel(v.obj.GetUID()) {
		return ctrl.Result{RequeueAfter: requeue}, nil // deleted while it ran: its Done comes first
	}
	done, err := r.Exposer.Cleanup(ctx, v.op(), v.source)
	if err != nil || !done {
		return ctrl.Result{RequeueAfter: requeue}, err
	}
	patch := client.MergeFrom(v.obj.DeepCopyObject().(client.Object))
	controllerutil.RemoveFinalizer(v.obj, exposer.Finalizer)
	if err := r.Client.Patch(ctx, v.obj, patch); err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, fmt.Errorf("remove the finalizer of %s: %w", v.obj.GetName(), err)
	}
	log.FromContext(ctx).Info("data movement cleaned up", "kind", r.kind(), "name", v.obj.GetName(), "phase", v.phase)
	return ctrl.Result{}, nil
}

// cancel ends an operation on request: one nobody accepted by any agent (also one pinned to a
// node without an agent), others by their owner.
func (r *Reconciler) cancel(ctx context.Context, v view) error {
	new := v.phase == "" || v.phase == velerov2alpha1.DataMovePhaseNew
	if !new && v.owner() != r.Node {
		return nil
	}
	if r.Runner.Cancel(v.obj.GetUID()) {
		return nil // the running operation ends itself as Canceled
	}
	if err := r.Exposer.StopMover(ctx, v.op()); err != nil {
		return err
	}
	return r.endUnstarted(ctx, v, new, velerov2alpha1.DataMovePhaseCanceled, "canceled on request (spec.cancel) before it ran")
}

// endUnstarted ends an operation whose mover does not run, in phase; one nobody accepted (new)
// also loses its source snapshot, since nobody holds its finalizer. Decided from the object as
// read: written only if it is still that version, so a stale cache never overrides an outcome
// recorded meanwhile.
func (r *Reconciler) endUnstarted(ctx context.Context, v view, new bool, phase velerov2alpha1.DataMovePhase, msg string) error {
	if new {
		if _, err := r.Exposer.Cleanup(ctx, v.op(), v.source); err != nil {
			return err
		}
	}
	return r.record(ctx, v, phase, msg, nil, operation.PatchStatusIfUnchanged)
}

// accept takes a new operation for this node, unless its queue of operations being prepared is
// full; one whose spec is unusable ends Failed. Of agents accepting the same version at once exactly one succeeds.
func (r *Reconciler) accept(ctx context.Context, v view) (ctrl.Result, error) {
	if v.specNode != "" && v.specNode != r.Node {
		return ctrl.Result{}, nil
	}
	if v.invalid != nil {
		// Any agent may fail it: the first write wins, the others get a Conflict and look again.
		err := r.endUnstarted(ctx, v, true, velerov2alpha1.DataMovePhaseFailed, v.invalid.Error())
		if apierrors.IsConflict(err) {
			return ctrl.Result{Requeue: true}, nil
		}
		return ctrl.Result{}, err
	}
	queued, err := r.preparing(ctx)
	if err != nil {
		return ctrl.Result{}, err
	}
	if limit := r.Config().PrepareQueueLength; queued >= limit {
		return ctrl.Result{RequeueAfter: 5 * requeue}, nil
	}
	now := metav1.NewTime(r.Clock.Now().Truncate(time.Second))
	obj := v.obj.DeepCopyObject().(client.Object)
	switch o := obj.(type) {
	case *velerov2alpha1.DataUpload:
		o.Status.Phase, o.Status.AcceptedByNode, o.Status.AcceptedTimestamp, o.Status.Message = velerov2alpha1.DataMovePhaseAccepted, r.Node, &now, ""
	case *velerov2alpha1.DataDownload:
		o.Status.Phase, o.Status.AcceptedByNode, o.Status.AcceptedTimestamp, o.Status.Message = velerov2alpha1.DataMovePhaseAccepted, r.Node, &now, ""
	}
	if err := operation.UpdateStatus(ctx, r.Client, obj); err != nil {
		if apierrors.IsConflict(err) {
			return ctrl.Result{Requeue: true}, nil // another agent, or a newer version: look again
		}
		return ctrl.Result{}, err
	}
	patch := client.MergeFrom(obj.DeepCopyObject().(client.Object))
	controllerutil.AddFinalizer(obj, exposer.Finalizer)
	if err := r.Client.Patch(ctx, obj, patch); err != nil {
		return ctrl.Result{}, fmt.Errorf("add the finalizer to %s: %w", obj.GetName(), err)
	}
	r.Recorder.Eventf(obj, corev1.EventTypeNormal, "Accepted", "accepted by node %s", r.Node)
	return ctrl.Result{}, nil
}

// preparing counts the operations of both kinds this agent accepted that do not run yet.
func (r *Reconciler) preparing(ctx context.Context) (int, error) {
	n := 0
	ups, downs := &velerov2alpha1.DataUploadList{}, &velerov2alpha1.DataDownloadList{}
	for _, list := range []client.ObjectList{ups, downs} {
		if err := r.Client.List(ctx, list, client.InNamespace(r.Exposer.Namespace)); err != nil {
			return 0, err
		}
	}
	count := func(p velerov2alpha1.DataMovePhase, by string) {
		if by == r.Node && (p == velerov2alpha1.DataMovePhaseAccepted || p == velerov2alpha1.DataMovePhasePrepared) {
			n++
		}
	}
	for _, o := range ups.Items {
		count(o.Status.Phase, o.Status.AcceptedByNode)
	}
	for _, o := range downs.Items {
		count(o.Status.Phase, o.Status.AcceptedByNode)
	}
	return n, nil
}

// prepare exposes an accepted operation until its mover pod runs.
func (r *Reconciler) prepare(ctx context.Context, v view) (ctrl.Result, error) {
	if v.invalid != nil {
		return ctrl.Result{}, r.fail(ctx, v, v.invalid.Error())
	}
	now := r.Clock.Now()
	if now.After(operation.Deadline(v.accepted, v.timeout, now)) {
		return ctrl.Result{}, r.fail(ctx, v, fmt.Sprintf("timed out after %s while preparing: %s", v.timeout, v.message))
	}
	op := r.moverOp(v)
	var waiting string
	var err error
	if v.upload {
		if v.source == nil {
			return ctrl.Result{}, r.fail(ctx, v, "spec.csiSnapshot is required for snapshotType CSI")
		}
		waiting, err = r.Exposer.ExposeSnapshot(ctx, op, *v.source)
	} else {
		err = r.Exposer.ExposeTarget(ctx, op, v.target)
	}
	if errors.Is(err, exposer.ErrPermanent) {
		return ctrl.Result{}, r.fail(ctx, v, err.Error())
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	if waiting != "" {
		return ctrl.Result{RequeueAfter: requeue}, r.note(ctx, v, waiting)
	}
	st, err := r.Exposer.Inspect(ctx, op, now)
	if err != nil {
		return ctrl.Result{}, err
	}
	switch {
	case st.Problem != "":
		return ctrl.Result{}, r.fail(ctx, v, st.Problem)
	case st.Stale:
		// The scheduler parked the pod on its claim, bound since: a new pod is scheduled at once
		// (made again by the exposure above, once this one is gone).
		log.FromContext(ctx).Info("the mover pod waits on a claim that is bound; making it again")
		if err := r.Exposer.StopMover(ctx, op); err != nil {
			return ctrl.Result{}, err
		}
		return ctrl.Result{RequeueAfter: requeue}, r.note(ctx, v, "waiting for the mover pod to start")
	case !st.Running:
		return ctrl.Result{RequeueAfter: 5 * requeue}, r.note(ctx, v, "waiting for the mover pod to start")
	}
	if err := r.patch(ctx, v.obj, status{Phase: velerov2alpha1.DataMovePhasePrepared, Node: st.Node, Message: ptr("")}); err != nil {
		return ctrl.Result{}, err
	}
	r.Recorder.Eventf(v.obj, corev1.EventTypeNormal, "Prepared", "mover pod runs on node %s", st.Node)
	return ctrl.Result{}, nil
}

// moverOp is the operation as its mover pod is made: workers and resources from the
// operation's settings and the node-agent ConfigMap.
func (r *Reconciler) moverOp(v view) exposer.Operation {
	op := v.op()
	config := r.Config()
	op.Parallel, op.Resources = parallel(v.obj, config.ParallelFilesUpload), config.PodResources
	return op
}

// note sets a waiting operation's message, when it changed.
func (r *Reconciler) note(ctx context.Context, v view, msg string) error {
	if v.message == msg {
		return nil
	}
	return r.patch(ctx, v.obj, status{Message: &msg})
}

func (r *Reconciler) fail(ctx context.Context, v view, msg string) error {
	if err := r.Exposer.StopMover(ctx, v.op()); err != nil {
		return err
	}
	return r.finish(ctx, v, velerov2alpha1.DataMovePhaseFailed, msg, nil)
}

// finish writes a terminal phase; once it landed, an Event, a log line and the metrics follow;
// cleanup comes after.
func (r *Reconciler) finish(ctx context.Context, v view, phase velerov2alpha1.DataMovePhase, msg string, extra *status) error {
	return r.record(ctx, v, phase, msg, extra, operation.PatchStatus)
}

func (r *Reconciler) record(ctx context.Context, v view, phase velerov2alpha1.DataMovePhase, msg string, extra *status,
	patch func(context.Context, client.Client, client.Object, any) error) error {
	st := status{}
	if extra != nil {
		st = *extra
	}
	now := metav1.NewTime(r.Clock.Now().Truncate(time.Second))
	st.Phase, st.Message, st.CompletionTimestamp = phase, &msg, &now
	st.Conditions = append(st.Conditions, operation.Succeeded(phase == velerov2alpha1.DataMovePhaseCompleted, string(phase), msg, v.obj.GetGeneration(), now))
	if err := patch(ctx, r.Client, v.obj, st); err != nil {
		return err
	}
	// metrics.KindUpload or KindDownload
	operation.Ended(ctx, r.Recorder, v.obj, r.kind(), string(phase), phase == velerov2alpha1.DataMovePhaseCompleted, msg, v.started, r.Clock.Now())
	return nil
}

func (r *Reconciler) patch(ctx context.Context, obj client.Object, st status) error {
	return operation.PatchStatus(ctx, r.Client, obj, st)
}
