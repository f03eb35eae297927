package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/utils/clock"
)

// Following an operation.
const (
	// pollInterval is how often --wait reads the operation and its volumes.
	pollInterval = time.Second
	// readErrorLimit is how long --wait goes on through failing reads (an API server restart).
	readErrorLimit = 30 * time.Second
)

// Exit codes of the ferry command.
const (
	ExitError = 1 // anything went wrong
	// ExitNotCompleted: a backup or restore followed with --wait ended in a phase other than
	// Completed, or `backup verify` found damage or could not verify every volume.
	ExitNotCompleted = 2
)

// ExitCode is the exit status for err returned by the ferry command.
func ExitCode(err error) int {
	var nc *notCompletedError
	var vf *verificationFailedError
	if errors.As(err, &nc) || errors.As(err, &vf) {
		return ExitNotCompleted
	}
	return ExitError
}

// notCompletedError says how a followed operation ended, when not Completed.
type notCompletedError struct{ op operation }

func (e *notCompletedError) Error() string {
	op := e.op
	var why []string
	if op.FailureReason != "" {
		why = append(why, op.FailureReason)
	}
	why = append(why, op.ValidationErrors...)
	if t := sum(op.Volumes, time.Now()); t.Failed+t.Canceled > 0 {
		why = append(why, fmt.Sprintf("%d of %d volumes failed or were canceled", t.Failed+t.Canceled, len(op.Volumes)))
	}
	if op.Errors > 0 {
		why = append(why, fmt.Sprintf("%d errors", op.Errors))
	}
	msg := fmt.Sprintf("%s %s ended %s", op.Kind, op.Name, op.Phase)
	if len(why) > 0 {
		msg += ": " + strings.Join(why, "; ")
	}
	return msg + fmt.Sprintf(" (ferry %s describe %s --details)", op.Kind, op.Name)
}

// newDisplay picks the display for w: bars on a terminal, lines otherwise.
func newDisplay(w io.Writer) display {
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return newBarDisplay(w, clock.RealClock{})
	}
	return newLineDisplay(w, clock.RealClock{})
}

// follow reads the operation every interval until it ends, showing each reading on d, and
// returns an error unless it ended Completed. Interrupted (ctx), it stops following; the
// operation goes on in the cluster.
func follow(ctx context.Context, kind, name string, load loader, d display, interval time.Duration) error {
	var last operation
	var failingSince time.Time
	stop := func() {
		if last.Name != "" {
			d.Finish(last)
		}
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		op, err := load(ctx)
		switch {
		case err == nil && op.Terminal():
			d.Finish(op)
			if op.Phase != "Completed" {
				return &notCompletedError{op: op}
			}
			return nil
		case err == nil:
			last, failingSince = op, time.Time{}
			d.Update(op)
		case ctx.Err() != nil:
		case apierrors.IsNotFound(err):
			stop()
			return err
		case failingSince.IsZero():
			failingSince = time.Now()
		case time.Since(failingSince) > readErrorLimit:
			stop()
			return fmt.Errorf("follow %s %s: %w", kind, name, err)
		}
		select {
		case <-ctx.Done():
			stop()
			return fmt.Errorf("stopped following %s %s (it goes on in the cluster: ferry %s describe %s): %w",
				kind, name, kind, name, ctx.Err())
		case <-tick.C:
		}
	}
}
