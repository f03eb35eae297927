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

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/ferry-backup/ferry/internal/metrics"
	"github.com/ferry-backup/ferry/internal/slot"
)

// Errors a finished operation reports besides its own.
var (
	// ErrCanceled means Cancel stopped the operation.
	ErrCanceled = errors.New("canceled on request")
	// ErrDeleted means the operation's object was deleted: a cancellation.
	ErrDeleted = fmt.Errorf("%w: its object was deleted", ErrCanceled)
	// ErrTimedOut means the operation ran past its deadline.
	ErrTimedOut = errors.New("timed out")
	// ErrNotRecorded is what Spec.Done returns when it deliberately records nothing: the process
	// is stopping, and the operation goes on after a restart.
	ErrNotRecorded = errors.New("outcome not recorded")
)

// Spec describes one operation.
type Spec struct {
	// Name names the object in logs and for CancelNamed, e.g. "PodVolumeBackup velero/x".
	Name string
	// Deadline ends the operation, waiting for a slot included; zero: none. Timeout is the
	// duration it derives from, as the error names it.
	Deadline time.Time
	Timeout  time.Duration
	// Waiting is called once if the operation has to wait for a slot.
	Waiting func(ctx context.Context)
	// Work does the operation once it has a slot.
	Work func(ctx context.Context) error
	// Done records Work's outcome: nil, Work's error, or an error wrapping ErrCanceled or
	// ErrTimedOut. It returns nil once the outcome is recorded, ErrNotRecorded when it records
	// nothing on purpose, or the error of a failed write: then it is called again, with backoff,
	// until it succeeds, its object is gone (NotFound) or the runner's base context ends. The
	// operation holds its slot until then, so a node never starts more operations than it has
	// slots while outcomes are still unwritten; a recorded operation is never started again in
	// this process.
	Done func(ctx context.Context, err error) error
}

// Runner runs operations.
type Runner struct {
	slots *slot.Pool
	base  context.Context
	// backoff is the first wait before Done is called again after a failed write.
	backoff time.Duration
	mu      sync.Mutex
	running map[types.UID]context.CancelCauseFunc
	names   map[string]types.UID
	// finished holds operations whose outcome was recorded, so that a reconcile reading a stale
	// cache does not start them again.
	finished map[types.UID]bool
	wg       sync.WaitGroup
}

// NewRunner returns a runner whose operations stop when base ends.
func NewRunner(base context.Context, slots *slot.Pool) *Runner {
	return &Runner{slots: slots, base: base, backoff: 500 * time.Millisecond,
		running: map[types.UID]context.CancelCauseFunc{}, names: map[string]types.UID{}, finished: map[types.UID]bool{}}
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
	if spec.Name != "" {
		r.names[spec.Name] = uid
	}
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

// CancelNamed stops the running operation of the object named so in its Spec, if any: the
// object was deleted, and only its name is left.
func (r *Runner) CancelNamed(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	cancel, ok := r.running[r.names[name]]
	if ok {
		cancel(ErrDeleted)
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
		if r.names[spec.Name] == uid {
			delete(r.names, spec.Name)
		}
		if recorded {
			r.finished[uid] = true
		}
		r.mu.Unlock()
		cancel(nil)
	}()
	if !spec.Deadline.IsZero() {
		var stop context.CancelFunc
		ctx, stop = context.WithDeadlineCause(ctx, spec.Deadline, fmt.Errorf("%w after %s (operationTimeout, counted from its acceptance)", ErrTimedOut, spec.Timeout))
		defer stop()
	}
	release, err := r.acquire(ctx, spec)
	if err == nil {
		defer release() // after the outcome is recorded
		err = r.work(ctx, spec)
	}
	if cause := context.Cause(ctx); cause != nil && ctx.Err() != nil {
		err = errors.Join(cause, err)
		if errors.Is(cause, ErrCanceled) || errors.Is(cause, ErrTimedOut) {
			err = cause
		}
	}
	recorded = r.record(context.WithoutCancel(ctx), spec, err)
}

// acquire waits for a slot.
func (r *Runner) acquire(ctx context.Context, spec Spec) (func(), error) {
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
	return release, err
}

func (r *Runner) work(ctx context.Context, spec Spec) error {
	metrics.Running.Inc()
	defer metrics.Running.Dec()
	return spec.Work(ctx)
}

// record calls Done until the outcome is written: an outcome is never lost to one failed write,
// and an operation whose status could not be written is not started again from a stale cache.
func (r *Runner) record(ctx context.Context, spec Spec, outcome error) bool {
	delay := r.backoff
	for {
		err := spec.Done(ctx, outcome)
		switch {
		case err == nil || apierrors.IsNotFound(err):
			return true
		case errors.Is(err, ErrNotRecorded):
			return false
		}
		log.FromContext(ctx).Error(err, "could not record the outcome of a volume operation; trying again", "operation", spec.Name, "in", delay)
		select {
		case <-r.base.Done():
			return false // stopping: the restarted process finds the operation unfinished
		case <-time.After(delay):
		}
		delay = min(2*delay, 30*time.Second)
	}
}

// Slots returns the runner's slot pool.
func (r *Runner) Slots() *slot.Pool { return r.slots }
