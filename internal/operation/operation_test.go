package operation

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-backup/ferry/internal/slot"
)

func TestRunnerRunsOncePerObjectAndReportsCauses(t *testing.T) {
	r := NewRunner(t.Context(), slot.New(1))
	started := make(chan struct{})
	done := make(chan error, 3)
	block := Spec{
		Work: func(ctx context.Context) error { close(started); <-ctx.Done(); return ctx.Err() },
		Done: func(_ context.Context, err error) error { done <- err; return nil },
	}
	if !r.Start("a", block) {
		t.Fatal("first start refused")
	}
	<-started
	if r.Start("a", block) {
		t.Fatal("a second operation for the same object started")
	}
	waiting := make(chan struct{})
	r.Start("b", Spec{
		Deadline: time.Now().Add(50 * time.Millisecond),
		Waiting:  func(context.Context) { close(waiting) },
		Work:     func(context.Context) error { return errors.New("must not run: no slot") },
		Done:     func(_ context.Context, err error) error { done <- err; return ErrNotRecorded },
	})
	<-waiting
	if err := <-done; !errors.Is(err, ErrTimedOut) {
		t.Fatalf("b: %v, want ErrTimedOut", err)
	}
	if !r.Cancel("a") {
		t.Fatal("cancel found nothing running")
	}
	if err := <-done; !errors.Is(err, ErrCanceled) {
		t.Fatalf("a: %v, want ErrCanceled", err)
	}
	r.Wait()
	if r.Cancel("a") {
		t.Fatal("a finished but can still be canceled")
	}
	if !r.Running("a") || r.Start("a", block) {
		t.Fatal("a recorded its outcome but could be started again")
	}
	if r.Running("b") {
		t.Fatal("b did not record its outcome yet counts as done")
	}
}

// An outcome whose write fails is written again until it lands, and its slot is held until then:
// the next operation starts only after. A deleted object's operation is canceled by name.
func TestRunnerRetriesTheOutcomeBeforeReleasingTheSlot(t *testing.T) {
	r := NewRunner(t.Context(), slot.New(1))
	r.backoff = time.Millisecond
	var calls atomic.Int32
	var secondRan atomic.Bool
	recorded := make(chan int32, 1)
	working := make(chan struct{})
	r.Start("a", Spec{
		Work: func(context.Context) error { close(working); return nil },
		Done: func(_ context.Context, err error) error {
			if n := calls.Add(1); n < 3 {
				return fmt.Errorf("write %d: %w", n, errors.New("the API server is unreachable"))
			}
			if secondRan.Load() {
				t.Error("the next operation got the slot before this outcome was recorded")
			}
			recorded <- calls.Load()
			return nil
		},
	})
	<-working // a holds the only slot
	ended := make(chan error, 1)
	r.Start("b", Spec{
		Name: "PodVolumeBackup velero/b",
		Work: func(ctx context.Context) error { secondRan.Store(true); <-ctx.Done(); return ctx.Err() },
		Done: func(_ context.Context, err error) error { ended <- err; return nil },
	})
	if n := <-recorded; n != 3 {
		t.Fatalf("outcome written on call %d, want 3", n)
	}
	if !r.CancelNamed("PodVolumeBackup velero/b") {
		t.Fatal("b not found by its name")
	}
	if err := <-ended; !errors.Is(err, ErrDeleted) || !errors.Is(err, ErrCanceled) {
		t.Fatalf("b ended with %v, want ErrDeleted", err)
	}
	r.Wait()
	if !secondRan.Load() {
		t.Fatal("b never ran")
	}
	if r.CancelNamed("PodVolumeBackup velero/b") {
		t.Fatal("a finished operation is still found by name")
	}
}

// A process that stops gives up writing an outcome: the restarted one finds the operation
// unfinished, and it is not marked recorded here.
func TestRunnerStopsRetryingWhenItsProcessStops(t *testing.T) {
	base, stop := context.WithCancel(t.Context())
	r := NewRunner(base, slot.New(1))
	r.backoff = time.Hour
	failed := make(chan struct{})
	r.Start("a", Spec{
		Work: func(context.Context) error { return nil },
		Done: func(context.Context, error) error { close(failed); return errors.New("unreachable") },
	})
	<-failed
	stop()
	r.Wait()
	if r.Running("a") {
		t.Fatal("an operation whose outcome was never written counts as recorded")
	}
}
