package datamovement

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/ferry-backup/ferry/api/shared"
	velerov2alpha1 "github.com/ferry-backup/ferry/api/v2alpha1"
	"github.com/ferry-backup/ferry/internal/exposer"
	"github.com/ferry-backup/ferry/internal/metrics"
	"github.com/ferry-backup/ferry/internal/operation"
)

// resync is how often a running operation looks at its mover even when nothing woke it.
const resync = 10 * time.Second

// errMover is a mover's failure, or trouble with its pod.
var errMover = errors.New("data mover")

// run starts watching a prepared (or, after a restart of the agent, running) operation: it waits
// for a slot of this node, marks the operation InProgress, which lets the mover begin, turns the
// mover's progress Events into status, and records its result. A running operation is woken by
// the reconciles its pod and Events cause.
func (r *Reconciler) run(v view) {
	uid := v.obj.GetUID()
	if r.Runner.Running(uid) {
		if ch, ok := r.nudges.Load(uid); ok {
			select {
			case ch.(chan struct{}) <- struct{}{}:
			default:
			}
		}
		return
	}
	nudge := make(chan struct{}, 1)
	var res *exposer.Result
	r.Runner.Start(uid, operation.Spec{
		Name:     r.kind() + " " + v.obj.GetNamespace() + "/" + v.obj.GetName(),
		Timeout:  v.timeout,
		Deadline: operation.Deadline(v.accepted, v.timeout, r.Clock.Now()),
		Waiting: func(ctx context.Context) {
			_, size, waiting := r.Runner.Slots().Stats()
			_ = r.note(ctx, v, fmt.Sprintf("mover pod ready; waiting for one of %d operation slots on node %s (%d waiting)", size, r.Node, waiting))
		},
		Work: func(ctx context.Context) error {
			r.nudges.Store(uid, nudge)
			defer r.nudges.Delete(uid)
			var err error
			res, err = r.watch(ctx, v, nudge)
			return err
		},
		Done: func(ctx context.Context, err error) error { return r.done(ctx, v, res, err) },
	})
}

// watch marks the operation InProgress and follows its mover to the end.
func (r *Reconciler) watch(ctx context.Context, v view, nudge <-chan struct{}) (*exposer.Result, error) {
	logger := log.FromContext(ctx).WithValues(r.kind(), v.obj.GetNamespace()+"/"+v.obj.GetName(), "node", r.Node)
	if v.phase != velerov2alpha1.DataMovePhaseInProgress {
		now := metav1.NewTime(r.Clock.Now().Truncate(time.Second))
		st := status{Phase: velerov2alpha1.DataMovePhaseInProgress, Message: ptr("")}
		if v.started == nil {
			st.StartTimestamp = &now
		}
		if err := r.patch(ctx, v.obj, st); err != nil {
			return nil, err
		}
		logger.Info("data movement started")
	} else {
		logger.Info("watching a running data movement again")
	}
	op := r.moverOp(v)
	last := v.progress
	kind := metrics.KindDownload
	if v.upload {
		kind = metrics.KindUpload
	}
	defer metrics.ForgetProgress(kind, v.obj.GetNamespace(), v.obj.GetName())
	recreated := 0
	ticker := time.NewTicker(resync)
	defer ticker.Stop()
	for {
		st, err := r.Exposer.Inspect(ctx, op, r.Clock.Now())
		switch {
		case err != nil:
			logger.Error(err, "read the mover pod") // transient: look again
		case st.Problem != "":
			return nil, fmt.Errorf("%w: %s", errMover, st.Problem)
		case st.Result != nil:
			if !v.upload && st.Result.Phase == exposer.ReasonCompleted {
				return st.Result, r.handOver(ctx, v, nudge)
			}
			return st.Result, nil
		case st.Deleting:
			// Wait until it is gone, then make a new one.
		case !st.Exists:
			// Deleted under it (by a person, or evicted): a new pod resumes, from the last
			// checkpoint for an upload.
			if recreated++; recreated > exposer.MaxRestarts {
				return nil, fmt.Errorf("%w: the mover pod was deleted %d times", errMover, recreated-1)
			}
			logger.Info("mover pod gone while it ran; making a new one", "attempt", recreated)
			if err := r.Exposer.RecreateMover(ctx, op); err != nil {
				logger.Error(err, "recreate the mover pod")
			}
		}
		if p, ok := r.progress(ctx, v); ok && !equality.Semantic.DeepEqual(p, last) {
			metrics.SetProgress(kind, v.obj.GetNamespace(), v.obj.GetName(), p)
			if err := r.patch(ctx, v.obj, status{Progress: &p}); err == nil {
				last = p
			}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-nudge:
		case <-ticker.C:
		}
	}
}

// progress reads the figures of the mover's Progress Event.
func (r *Reconciler) progress(ctx context.Context, v view) (shared.DataMoveOperationProgress, bool) {
	ev := &corev1.Event{}
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: v.obj.GetNamespace(), Name: exposer.ProgressEventName(v.obj.GetName())}, ev); err != nil {
		return shared.DataMoveOperationProgress{}, false
	}
	var p shared.DataMoveOperationProgress
	if err := json.Unmarshal([]byte(ev.Annotations[exposer.AnnotationProgress]), &p); err != nil {
		return p, false
	}
	return p, true
}

// handOver binds a download's filled volume to its target claim.
func (r *Reconciler) handOver(ctx context.Context, v view, nudge <-chan struct{}) error {
	ticker := time.NewTicker(requeue)
	defer ticker.Stop()
	for {
		waiting, err := r.Exposer.HandOver(ctx, v.op(), v.target)
		if err != nil && errors.Is(err, exposer.ErrPermanent) || err == nil && waiting == "" {
			return err
		}
		if err != nil {
			log.FromContext(ctx).Error(err, "hand the restored volume over")
		} else {
			_ = r.note(ctx, v, waiting)
			v.message = waiting
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-nudge:
		case <-ticker.C:
		}
	}
}

// done records the outcome. An agent shutting down records nothing: the mover goes on, and the
// restarted agent watches it again.
func (r *Reconciler) done(ctx context.Context, v view, res *exposer.Result, err error) error {
	switch {
	case errors.Is(err, context.Canceled):
		log.FromContext(ctx).Info("data movement left to its mover while the node-agent stops; the restarted agent watches it again",
			"name", v.obj.GetName())
		return operation.ErrNotRecorded
	case errors.Is(err, operation.ErrCanceled):
		_ = r.Exposer.StopMover(ctx, v.op())
		return r.finish(ctx, v, velerov2alpha1.DataMovePhaseCanceled, "canceled on request (spec.cancel)", nil)
	case err != nil:
		_ = r.Exposer.StopMover(ctx, v.op())
		return r.finish(ctx, v, velerov2alpha1.DataMovePhaseFailed, err.Error(), nil)
	}
	switch res.Phase {
	case exposer.ReasonCompleted:
		kind := r.kind()
		metrics.Bytes.WithLabelValues(kind).Add(float64(res.Progress.TotalBytes))
		metrics.Files.WithLabelValues(kind).Add(float64(res.Progress.TotalFiles))
		st := &status{SnapshotID: res.SnapshotID, Progress: &res.Progress, IncrementalBytes: res.Progress.IncrementalBytes,
			Conditions: notBackedUp(*res, r.Clock.Now())}
		return r.finish(ctx, v, velerov2alpha1.DataMovePhaseCompleted, res.Message, st)
	case exposer.ReasonCanceled:
		return r.finish(ctx, v, velerov2alpha1.DataMovePhaseCanceled, res.Message, nil)
	default:
		return r.finish(ctx, v, velerov2alpha1.DataMovePhaseFailed, res.Message, nil)
	}
}
