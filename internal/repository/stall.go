package repository

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/kopia/kopia/repo/blob"
)

// Kopia's S3 storage builds its own HTTP transport (a copy of Go's default one: 30 s to dial,
// 10 s for the TLS handshake, idle connections closed after 90 s) and gives it no response
// timeout, and no way to set one. An endpoint that accepts a request and never answers, or stops
// halfway through a body, keeps the request — and the backup, restore or maintenance waiting on
// it — alive for as long as its context lives, and a checkpoint flush or a lock release runs
// without one. stallGuard bounds every request by its progress instead: a call that sends or
// receives no byte (and lists no blob) for the stall timeout is abandoned and tried again, up to
// stallAttempts times. A slow transfer that keeps moving is never cut; a silent endpoint is
// given up on within stallAttempts × the stall timeout per call.

// DefaultStallTimeout is how long a request to S3 may make no progress before it is abandoned
// (config.stallTimeout of the location).
const DefaultStallTimeout = 2 * time.Minute

// stallAttempts is how many times a stalled call is tried in all.
const stallAttempts = 3

// ErrStalled is returned when the storage stopped answering a request.
var ErrStalled = errors.New("the storage stopped answering")

// stallGuard bounds each call of the storage it wraps by its progress.
type stallGuard struct {
	blob.Storage
	timeout time.Duration
	name    string
	// abort, when set, ends every call in flight: the repository handle closed.
	abort context.Context
}

func (s *stallGuard) GetBlob(ctx context.Context, id blob.ID, offset, length int64, output blob.OutputBuffer) error {
	return s.retry(ctx, "read blob "+string(id), func(ctx context.Context, w *watchdog) error {
		output.Reset()
		return s.Storage.GetBlob(ctx, id, offset, length, &progressOutput{OutputBuffer: output, w: w})
	})
}

func (s *stallGuard) GetMetadata(ctx context.Context, id blob.ID) (blob.Metadata, error) {
	var m blob.Metadata
	err := s.retry(ctx, "read metadata of blob "+string(id), func(ctx context.Context, _ *watchdog) error {
		var err error
		m, err = s.Storage.GetMetadata(ctx, id)
		return err
	})
	return m, err
}

func (s *stallGuard) PutBlob(ctx context.Context, id blob.ID, data blob.Bytes, opts blob.PutOptions) error {
	return s.retry(ctx, "write blob "+string(id), func(ctx context.Context, w *watchdog) error {
		return s.Storage.PutBlob(ctx, id, progressBytes{Bytes: data, w: w}, opts)
	})
}

func (s *stallGuard) DeleteBlob(ctx context.Context, id blob.ID) error {
	return s.retry(ctx, "delete blob "+string(id), func(ctx context.Context, _ *watchdog) error {
		return s.Storage.DeleteBlob(ctx, id)
	})
}

// ListBlobs is not retried: the callback has seen the blobs listed before the stall.
func (s *stallGuard) ListBlobs(ctx context.Context, prefix blob.ID, cb func(blob.Metadata) error) error {
	wctx, w := s.watch(ctx)
	defer w.stop()
	err := s.Storage.ListBlobs(wctx, prefix, func(m blob.Metadata) error {
		w.progress()
		return cb(m)
	})
	return s.explain(wctx, "list blobs "+string(prefix), err)
}

func (s *stallGuard) ExtendBlobRetention(ctx context.Context, id blob.ID, opts blob.ExtendOptions) error {
	return s.retry(ctx, "extend the retention of blob "+string(id), func(ctx context.Context, _ *watchdog) error {
		return s.Storage.ExtendBlobRetention(ctx, id, opts)
	})
}

// retry runs call under a watchdog and runs it again when it stalled while ctx is alive.
func (s *stallGuard) retry(ctx context.Context, what string, call func(context.Context, *watchdog) error) error {
	for attempt := 1; ; attempt++ {
		wctx, w := s.watch(ctx)
		err := call(wctx, w)
		w.stop()
		if err == nil || !errors.Is(context.Cause(wctx), ErrStalled) || ctx.Err() != nil || attempt == stallAttempts {
			return s.explain(wctx, what, err)
		}
	}
}

// explain names a stall as the cause of err.
func (s *stallGuard) explain(wctx context.Context, what string, err error) error {
	cause := context.Cause(wctx)
	switch {
	case err == nil:
	case errors.Is(cause, ErrStalled):
		return fmt.Errorf("%s at %s: %w: no progress for %s (%w)", what, s.name, ErrStalled, s.timeout, err)
	case errors.Is(cause, errClosed):
		return fmt.Errorf("%s at %s: %w (%w)", what, s.name, cause, err)
	}
	return err
}

func (s *stallGuard) watch(ctx context.Context) (context.Context, *watchdog) {
	wctx, cancel := context.WithCancelCause(ctx)
	w := &watchdog{start: time.Now(), timeout: s.timeout, cancel: cancel, unlink: func() bool { return true }}
	w.timer = time.AfterFunc(s.timeout, w.check)
	if s.abort != nil {
		w.unlink = context.AfterFunc(s.abort, func() { cancel(context.Cause(s.abort)) })
	}
	return wctx, w
}

// watchdog cancels a call's context when it made no progress for timeout.
type watchdog struct {
	start   time.Time
	last    atomic.Int64 // time of the last progress, since start
	stopped atomic.Bool
	timeout time.Duration
	timer   *time.Timer
	cancel  context.CancelCauseFunc
	unlink  func() bool
}

func (w *watchdog) progress() { w.last.Store(int64(time.Since(w.start))) }

// check runs on the timer: it cancels the call, or waits for the rest of the timeout since
// the last progress.
func (w *watchdog) check() {
	idle := time.Since(w.start) - time.Duration(w.last.Load())
	switch {
	case w.stopped.Load():
	case idle >= w.timeout:
		w.cancel(ErrStalled)
	default:
		w.timer.Reset(w.timeout - idle)
	}
}

func (w *watchdog) stop() {
	w.stopped.Store(true)
	w.timer.Stop()
	w.unlink()
	w.cancel(nil)
}

// progressOutput reports every write of a blob being read as progress.
type progressOutput struct {
	blob.OutputBuffer
	w *watchdog
}

func (p *progressOutput) Write(b []byte) (int, error) {
	p.w.progress()
	return p.OutputBuffer.Write(b)
}

// progressBytes reports every read of a blob being written as progress.
type progressBytes struct {
	blob.Bytes
	w *watchdog
}

func (p progressBytes) Reader() io.ReadSeekCloser {
	return progressReader{ReadSeekCloser: p.Bytes.Reader(), w: p.w}
}

func (p progressBytes) WriteTo(dst io.Writer) (int64, error) {
	p.w.progress()
	return p.Bytes.WriteTo(dst)
}

type progressReader struct {
	io.ReadSeekCloser
	w *watchdog
}

func (p progressReader) Read(b []byte) (int, error) {
	n, err := p.ReadSeekCloser.Read(b)
	if n > 0 {
		p.w.progress()
	}
	return n, err
}
