package operation

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/ferry-backup/ferry/api/shared"
	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/metrics"
)

// Reporter writes what pod volume operations of one kind go through: status, Events, logs and
// metrics, the same way for backups and restores.
type Reporter struct {
	Client   client.Client
	Recorder record.EventRecorder
	// Kind is metrics.KindBackup or metrics.KindRestore.
	Kind string
	// Now returns the current time.
	Now func() time.Time
}

// Waiting tells the object's status that it waits for one of the node's slots.
func (r Reporter) Waiting(ctx context.Context, obj client.Object, slots interface{ Stats() (int, int, int) }, node string) {
	_, size, waiting := slots.Stats()
	msg := fmt.Sprintf("waiting for one of %d repository operation slots on node %s (%d waiting)", size, node, waiting)
	_ = PatchStatus(ctx, r.Client, obj, Status{Message: &msg}) // best effort; the next state overwrites it
}

// ConditionSucceeded is the condition an ended operation gets besides its phase: True when it
// completed, False when it failed or was canceled (the reason is the phase), with the
// generation of the spec it ended for.
const ConditionSucceeded = "Succeeded"

// maxConditionMessage bounds a condition's message; the status message keeps the whole text.
const maxConditionMessage = 1024

// Finish writes a terminal phase with its message, the Succeeded condition and extra status
// fields; once it landed, an Event (Normal for Completed, Warning otherwise), a log line and the
// metrics follow, so that an outcome written again after a failed write is counted once.
// started is the status' startTimestamp, if any.
func (r Reporter) Finish(ctx context.Context, obj client.Object, phase velerov1.PodVolumePhase, msg string, extra *Status, started *metav1.Time) error {
	return r.finish(ctx, obj, phase, msg, extra, started, PatchStatus)
}

// FinishIfUnchanged is Finish for an outcome decided from the object as read: it is written only
// if the object did not change since (a Conflict otherwise), so a stale cache never overrides an
// outcome recorded meanwhile.
func (r Reporter) FinishIfUnchanged(ctx context.Context, obj client.Object, phase velerov1.PodVolumePhase, msg string) error {
	return r.finish(ctx, obj, phase, msg, nil, nil, PatchStatusIfUnchanged)
}

func (r Reporter) finish(ctx context.Context, obj client.Object, phase velerov1.PodVolumePhase, msg string, extra *Status, started *metav1.Time,
	patch func(context.Context, client.Client, client.Object, any) error) error {
	st := Status{}
	if extra != nil {
		st = *extra
	}
	now := metav1.NewTime(r.Now().Truncate(time.Second))
	st.Phase, st.Message, st.CompletionTimestamp = phase, &msg, &now
	st.Conditions = append(st.Conditions, Succeeded(phase == velerov1.PodVolumePhaseCompleted, string(phase), msg, obj.GetGeneration(), now))
	if err := patch(ctx, r.Client, obj, st); err != nil {
		return err
	}
	Ended(ctx, r.Recorder, obj, r.Kind, string(phase), phase == velerov1.PodVolumePhaseCompleted, msg, started, r.Now())
	return nil
}

// Ended tells that an operation of kind ended in phase, once its outcome is written: an Event
// (Normal when it completed, Warning otherwise), a log line and the metrics. started is its
// startTimestamp, if any.
func Ended(ctx context.Context, recorder record.EventRecorder, obj client.Object, kind, phase string, completed bool, msg string, started *metav1.Time, now time.Time) {
	eventType := corev1.EventTypeWarning
	if completed {
		eventType = corev1.EventTypeNormal
	}
	metrics.Operations.WithLabelValues(kind, phase).Inc()
	if started != nil {
		metrics.Duration.WithLabelValues(kind, phase).Observe(now.Sub(started.Time).Seconds())
	}
	recorder.Event(obj, eventType, phase, msg)
	log.FromContext(ctx).Info("volume operation ended", "kind", kind, "name", obj.GetNamespace()+"/"+obj.GetName(), "phase", phase, "message", msg)
}

// Succeeded is the ConditionSucceeded of an operation that ended in phase.
func Succeeded(ok bool, phase, msg string, generation int64, at metav1.Time) metav1.Condition {
	status := metav1.ConditionFalse
	if ok {
		status = metav1.ConditionTrue
	}
	if len(msg) > maxConditionMessage {
		msg = strings.ToValidUTF8(msg[:maxConditionMessage-3], "") + "..." // never half a character
	}
	return metav1.Condition{Type: ConditionSucceeded, Status: status, Reason: phase, Message: msg, ObservedGeneration: generation, LastTransitionTime: at}
}

// Request is one pod volume operation (a PodVolumeBackup or PodVolumeRestore) as the shared
// lifecycle sees it.
type Request struct {
	Object client.Object
	// Node is the object's spec.node; Phase its status.phase; Cancel its spec.cancel.
	Node   string
	Phase  velerov1.PodVolumePhase
	Cancel bool
	// Attempts is its status.attempts: how often a node-agent started moving its data.
	Attempts int32
	// Invalid is what makes the spec unusable (e.g. TimeoutErr): an operation that is not
	// running ends Failed with it instead of starting.
	Invalid error
	// Accepted holds status fields to write besides the phase and time when the operation is
	// accepted.
	Accepted Status
	// Operation builds what the Runner runs.
	Operation func() Spec
}

// MaxAttempts is how often an operation is started before it fails: one interrupted that often
// (its node-agent killed while it ran, out of memory say) is not tried again.
const MaxAttempts = 3

// Advance moves an operation of this node one step: operations of other nodes and ended ones are
// left alone, a cancel request stops the running operation (or ends a waiting one), one whose
// spec is Invalid ends Failed unless it runs already, a new one is accepted (status and Event),
// and one that is not running here is started — also after a restart
// of the node-agent, when it resumes from its checkpoint, unless it was started MaxAttempts
// times already.
func (r *Runner) Advance(ctx context.Context, rep Reporter, node string, req Request) error {
	if req.Node != node || req.Phase.Terminal() {
		return nil
	}
	uid := req.Object.GetUID()
	if req.Cancel {
		if r.Cancel(uid) || r.Running(uid) {
			return nil // the running operation ends itself as Canceled; an ended one stays as it ended
		}
		return rep.FinishIfUnchanged(ctx, req.Object, velerov1.PodVolumePhaseCanceled, "canceled before it started")
	}
	if r.Running(uid) {
		return nil
	}
	if req.Invalid != nil {
		return rep.FinishIfUnchanged(ctx, req.Object, velerov1.PodVolumePhaseFailed, req.Invalid.Error())
	}
	if req.Attempts >= MaxAttempts {
		return rep.FinishIfUnchanged(ctx, req.Object, velerov1.PodVolumePhaseFailed, fmt.Sprintf(
			"started %d times and interrupted each time (the node-agent stopped while it ran: out of memory, or killed; see its restarts); not tried again", req.Attempts))
	}
	if req.Phase == "" || req.Phase == velerov1.PodVolumePhaseNew {
		st := req.Accepted
		st.Phase, st.AcceptedTimestamp = velerov1.PodVolumePhaseAccepted, Ptr(metav1.NewTime(rep.Now().Truncate(time.Second)))
		if err := PatchStatus(ctx, rep.Client, req.Object, st); err != nil {
			return err
		}
		rep.Recorder.Eventf(req.Object, corev1.EventTypeNormal, "Accepted", "accepted by node %s", node)
	}
	r.Start(uid, req.Operation())
	return nil
}

// Start marks the operation InProgress and counts the attempt, keeping the start time of an
// earlier attempt (a resumed operation started when it first started).
func (r Reporter) Start(ctx context.Context, obj client.Object, startedBefore *metav1.Time, attemptsBefore int32) error {
	st := Status{Phase: velerov1.PodVolumePhaseInProgress, Message: Ptr(""), Attempts: Ptr(attemptsBefore + 1)}
	if startedBefore == nil {
		st.StartTimestamp = Ptr(metav1.NewTime(r.Now().Truncate(time.Second)))
	}
	return PatchStatus(ctx, r.Client, obj, st)
}

// DefaultTimeout bounds an operation whose spec.operationTimeout is empty or zero.
const DefaultTimeout = 4 * time.Hour

// Timeout is spec.operationTimeout, or DefaultTimeout when it is empty, zero or not a duration
// (TimeoutErr).
func Timeout(d *shared.Duration) time.Duration {
	if d != nil && d.Duration > 0 {
		return d.Duration
	}
	return DefaultTimeout
}

// TimeoutErr reports a spec.operationTimeout that is not a duration (possible under Velero's
// CRDs, which do not check it): the node-agent fails such an operation before it starts.
func TimeoutErr(d *shared.Duration) error {
	if d == nil {
		return nil
	}
	return d.Err("spec.operationTimeout")
}

// Deadline is when an operation accepted at accepted (nil: not yet, now) times out: counted
// from its acceptance, so that neither waiting for a slot nor restarts of the node-agent extend
// it.
func Deadline(accepted *metav1.Time, timeout time.Duration, now time.Time) time.Time {
	if accepted == nil {
		return now.Add(timeout)
	}
	return accepted.Add(timeout)
}
