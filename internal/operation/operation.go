// Package operation provides the node-agent's running volume operations: at most one per
// object, each in its own goroutine, waiting for a slot of the node's concurrentRepoOperations,
// bounded by a timeout and stoppable by cancellation.
package operation

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/ferry-backup/ferry/internal/metrics"
	"github.com/ferry-backup/ferry/internal/slot"
)

// Errors a finished operation reports besides its own.
var (
	// ErrCanceled means Cancel stopped the operation.
	ErrCanceled = errors.New("canceled on request")
	// ErrTimedOut means the operation ran past its timeout.
	ErrTimedOut = errors.New("timed out")
)

// Spec describes one operation.
type Spec struct {
	// Timeout bounds the operation from Start, waiting for a slot included.
	Timeout time.Duration
	// Waiting is called once if the operation has to wait for a slot.
	Waiting func(ctx context.Context)
	// Work does the operation once it has a slot.
	Work func(ctx context.Context) error
	// Done is called with Work's outcome: nil, Work's error, or an error wrapping ErrCanceled or
	// ErrTimedOut. It runs before the operation stops counting as running, and returns whether
	// it recorded the outcome; a recorded operation is never started again in this process.
	Done func(ctx context.Context, err error) (recorded bool)
}

// Runner runs operations.
type Runner struct {
	slots   *slot.Pool
	base    context.Context
	mu      sync.Mutex
	running map[types.UID]context.CancelCauseFunc
	// finished holds operations whose outcome was recorded, so that a reconcile reading a stale
	// cache does not start them again.
	finished map[types.UID]bool
	wg       sync.WaitGroup
}

// NewRunner returns a runner whose operations stop when base ends.
func NewRunner(base context.Context, slots *slot.Pool) *Runner {
	return &Runner{slots: slots, base: base, running: map[types.UID]context.CancelCauseFunc{}, finished: map[types.UID]bool{}}
}

// Running reports whether the object's operation runs in this process, or ran and recorded its
// outcome: either way there is nothing to start.
func (r *Runner) Running(uid types.UID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.running[uid]
	return ok || r.finished[uid]
}

// Start runs the object's operation unless one is running already or has finished; it reports
// whether it did.
func (r *Runner) Start(uid types.UID, spec Spec) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.running[uid]; ok || r.finished[uid] {
		return false
	}
	ctx, cancel := context.WithCancelCause(r.base)
	r.running[uid] = cancel
	r.wg.Add(1)
	go r.run(ctx, uid, cancel, spec)
	return true
}

// Cancel stops the object's running operation, if any.
func (r *Runner) Cancel(uid types.UID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	cancel, ok := r.running[uid]
	if ok {
		cancel(ErrCanceled)
	}
	return ok
}

// Wait blocks until every operation has finished.
func (r *Runner) Wait() { r.wg.Wait() }

func (r *Runner) run(ctx context.Context, uid types.UID, cancel context.CancelCauseFunc, spec Spec) {
	defer r.wg.Done()
	recorded := false
	defer func() {
		r.mu.Lock()
		delete(r.running, uid)
		if recorded {
			r.finished[uid] = true
		}
		r.mu.Unlock()
		cancel(nil)
	}()
	if spec.Timeout > 0 {
		var stop context.CancelFunc
		ctx, stop = context.WithTimeoutCause(ctx, spec.Timeout, fmt.Errorf("%w after %s", ErrTimedOut, spec.Timeout))
		defer stop()
	}
	err := r.work(ctx, spec)
	if cause := context.Cause(ctx); cause != nil && ctx.Err() != nil {
		err = errors.Join(cause, err)
		if errors.Is(cause, ErrCanceled) || errors.Is(cause, ErrTimedOut) {
			err = cause
		}
	}
	recorded = spec.Done(context.WithoutCancel(ctx), err)
}

func (r *Runner) work(ctx context.Context, spec Spec) error {
	waiting := false
	release, err := r.slots.Acquire(ctx, func() {
		waiting = true
		metrics.Waiting.Inc()
		if spec.Waiting != nil {
			spec.Waiting(ctx)
		}
	})
	if waiting {
		metrics.Waiting.Dec()
	}
	if err != nil {
		return err
	}
	defer release()
	metrics.Running.Inc()
	defer metrics.Running.Dec()
	return spec.Work(ctx)
}

// Slots returns the runner's slot pool.
func (r *Runner) Slots() *slot.Pool { return r.slots }
