package uploader

import (
	"context"
	"testing"

	"github.com/kopia/kopia/repo"
	"github.com/kopia/kopia/snapshot/upload"
)

// blockingWriter is a write session whose flushes wait until the test lets them end.
type blockingWriter struct {
	repo.RepositoryWriter
	began chan int64
	end   chan struct{}
	f     *contentFlusher
}

func (w *blockingWriter) Flush(ctx context.Context) error {
	w.began <- w.f.written.Load()
	select {
	case <-w.end:
	case <-ctx.Done():
	}
	return nil
}

// A worker that finds more than two flushes' worth of contents unflushed waits until a flush
// ends, so a store slower than the workers cannot let the unflushed index grow without bound;
// stopping the flusher lets every waiting worker go.
func TestWorkersWaitForAFlushThatFallsBehind(t *testing.T) {
	const every = 10
	w := &blockingWriter{began: make(chan int64, 8), end: make(chan struct{})}
	f, stop := flushEvery(t.Context(), w, &upload.NullUploadProgress{}, every)
	w.f = f
	for range 2 * every {
		f.FinishedHashingFile("f", 1) // within two flushes' worth: no wait
	}
	began := <-w.began // kicked at the 10th content; sees 10 to 20 written
	if began < every || began > 2*every {
		t.Fatalf("the first flush began at %d contents, want 10 to 20", began)
	}
	passed := make(chan struct{})
	go func() {
		defer close(passed)
		f.FinishedDirectory("d") // the 21st: waits for the first flush
	}()
	notWaited := func() {
		select {
		case <-passed:
			t.Fatalf("%d contents written and no flush ended: the worker did not wait", f.written.Load())
		default:
		}
	}
	for f.written.Load() <= 2*every {
		notWaited()
	}
	notWaited()
	w.end <- struct{}{} // the first flush ends: the worker is 11 or fewer past its start
	<-passed

	// A worker waiting when the flusher stops is let go.
	for f.written.Load()-f.flushed.Load() < 2*every {
		f.FinishedHashingFile("f", 1)
	}
	stopped := make(chan struct{})
	go func() { defer close(stopped); f.FinishedHashingFile("f", 1) }()
	stop()
	<-stopped
}
