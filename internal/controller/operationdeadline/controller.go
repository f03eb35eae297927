// Package operationdeadline provides ferry-server's backstop for volume operations nobody ends:
// a PodVolumeBackup, PodVolumeRestore, DataUpload or DataDownload still running past its
// deadline plus a grace period is failed by the server. Node-agents end their own operations at
// the deadline; this catches those whose node has no node-agent (never accepted: the deadline
// counts from creation) or lost it (accepted, then the agent or its node went away). The
// deadline of an operation whose spec.operationTimeout is not a duration counts from the
// default timeout, and the message says so (a node-agent fails such an operation at once,
// naming the field).
package operationdeadline

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/ferry-backup/ferry/api/shared"
	velerov1 "github.com/ferry-backup/ferry/api/v1"
	velerov2alpha1 "github.com/ferry-backup/ferry/api/v2alpha1"
	"github.com/ferry-backup/ferry/internal/operation"
)

// The server fails the operations nobody ended: their status, or the object itself under
// Velero's CRDs, which have no status subresource.
// +kubebuilder:rbac:groups=velero.io,resources=podvolumebackups;podvolumerestores;datauploads;datadownloads,verbs=get;list;watch;patch,namespace=velero
// +kubebuilder:rbac:groups=velero.io,resources=podvolumebackups/status;podvolumerestores/status;datauploads/status;datadownloads/status,verbs=patch,namespace=velero
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch,namespace=velero

// DefaultGrace is how long past its deadline an operation's own node-agent has to end it before
// the server does.
const DefaultGrace = time.Minute

// Reconciler fails one kind of volume operation once it is past its deadline and grace.
type Reconciler struct {
	Client   client.Client
	Recorder record.EventRecorder
	Clock    clock.PassiveClock
	// Grace is added to each deadline; zero means DefaultGrace.
	Grace time.Duration
	// Object is an empty object of the kind: a *PodVolumeBackup, *PodVolumeRestore,
	// *DataUpload or *DataDownload.
	Object client.Object
}

// facts is what the backstop reads of an operation.
type facts struct {
	phase    string
	terminal bool
	accepted *metav1.Time
	timeout  time.Duration
	// node is where it runs or was meant to run.
	node string
	// invalid: spec.operationTimeout is not a duration, and timeout is the default.
	invalid error
}

func factsOf(obj client.Object) facts {
	f, timeout := factsAndTimeout(obj)
	f.timeout, f.invalid = operation.Timeout(timeout), operation.TimeoutErr(timeout)
	return f
}

func factsAndTimeout(obj client.Object) (facts, *shared.Duration) {
	switch o := obj.(type) {
	case *velerov1.PodVolumeBackup:
		return facts{phase: string(o.Status.Phase), terminal: o.Status.Phase.Terminal(), accepted: o.Status.AcceptedTimestamp, node: o.Spec.Node}, o.Spec.OperationTimeout
	case *velerov1.PodVolumeRestore:
		return facts{phase: string(o.Status.Phase), terminal: o.Status.Phase.Terminal(), accepted: o.Status.AcceptedTimestamp, node: o.Spec.Node}, o.Spec.OperationTimeout
	case *velerov2alpha1.DataUpload:
		return facts{phase: string(o.Status.Phase), terminal: o.Status.Phase.Terminal(), accepted: o.Status.AcceptedTimestamp,
			node: firstOf(o.Status.Node, o.Status.AcceptedByNode, o.Spec.Node)}, &o.Spec.OperationTimeout
	case *velerov2alpha1.DataDownload:
		return facts{phase: string(o.Status.Phase), terminal: o.Status.Phase.Terminal(), accepted: o.Status.AcceptedTimestamp,
			node: firstOf(o.Status.Node, o.Status.AcceptedByNode, o.Spec.Node)}, &o.Spec.OperationTimeout
	}
	panic(fmt.Sprintf("operationdeadline: %T is not a volume operation", obj))
}

func firstOf(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// SetupWithManager registers the controller for its kind.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	kind := strings.ToLower(reflect.TypeOf(r.Object).Elem().Name())
	return ctrl.NewControllerManagedBy(mgr).For(r.Object).Named(kind + "-deadline").Complete(r)
}

// Reconcile fails the operation if it is past its deadline and grace, else looks again then.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	obj := r.Object.DeepCopyObject().(client.Object)
	if err := r.Client.Get(ctx, req.NamespacedName, obj); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	f := factsOf(obj)
	if f.terminal {
		return ctrl.Result{}, nil
	}
	grace := r.Grace
	if grace == 0 {
		grace = DefaultGrace
	}
	from, what := f.accepted, "its acceptance"
	if from == nil {
		created := obj.GetCreationTimestamp()
		from, what = &created, "its creation (no node-agent accepted it)"
	}
	now := r.Clock.Now()
	deadline := operation.Deadline(from, f.timeout, now)
	if wait := deadline.Add(grace).Sub(now); wait > 0 {
		return ctrl.Result{RequeueAfter: wait}, nil
	}
	node := "any node"
	if f.node != "" {
		node = "node " + f.node
	}
	timeout := f.timeout.String()
	if f.invalid != nil {
		timeout += fmt.Sprintf(" (the default, since %v)", f.invalid)
	}
	msg := fmt.Sprintf("timed out after %s, counted from %s, and no node-agent ended it within %s after that: is the node-agent of %s running?",
		timeout, what, grace, node)
	// Decided from the object as read: a phase written meanwhile wins (Conflict, read again).
	at := metav1.NewTime(now.Truncate(time.Second))
	if err := operation.PatchStatusIfUnchanged(ctx, r.Client, obj, operation.Status{
		Phase: velerov1.PodVolumePhaseFailed, Message: &msg, CompletionTimestamp: &at,
		Conditions: []metav1.Condition{operation.Succeeded(false, string(velerov1.PodVolumePhaseFailed), msg, obj.GetGeneration(), at)},
	}); err != nil {
		return ctrl.Result{}, err
	}
	r.Recorder.Event(obj, corev1.EventTypeWarning, "TimedOut", msg)
	log.FromContext(ctx).Info("failed a volume operation nobody ended", "name", req.String(), "phase", f.phase, "message", msg)
	return ctrl.Result{}, nil
}
