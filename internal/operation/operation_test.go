package operation

import (
	"context"
	"errors"
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
		Done: func(_ context.Context, err error) bool { done <- err; return true },
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
		Timeout: 50 * time.Millisecond,
		Waiting: func(context.Context) { close(waiting) },
		Work:    func(context.Context) error { return errors.New("must not run: no slot") },
		Done:    func(_ context.Context, err error) bool { done <- err; return false },
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
