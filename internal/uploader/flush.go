package uploader

import (
	"context"
	"math"
	"sync"
	"sync/atomic"

	"github.com/kopia/kopia/repo"
	"github.com/kopia/kopia/snapshot/upload"
)

// DefaultFlushContents is how many contents (hashed files and directories) a backup writes
// before it flushes them to the store. Kopia keeps, for every content written since the last
// flush, its index entry in memory twice (in the pending pack and in the index to write), about
// 400 bytes a content, and flushes on its own only every 10 minutes: a volume of millions of
// small files would hold them all. Flushing on a count bounds that memory to some 40 MiB (80
// while a slow store finishes a flush) whatever the number of files, at the price of one index
// blob per flush (maintenance compacts them) and a smaller last pack. Kopia's own checkpoints
// flush the same way mid-upload, so a flush never makes an unfinished snapshot visible.
const DefaultFlushContents = 100_000

// contentFlusher counts the contents an upload writes and flushes the write session every
// `every` of them, from a goroutine of its own so that no upload worker waits for a store that
// keeps up. One that does not is waited for: a worker that finds more than two flushes' worth
// of contents not yet flushed waits until a flush ends (whether it succeeded or not), so the
// memory stays bounded however slow the store is.
type contentFlusher struct {
	upload.Progress
	w       repo.RepositoryWriter
	every   int64
	written atomic.Int64
	kick    chan struct{}
	done    sync.WaitGroup

	// flushed is the count of contents written when the last flush that ended began (or, once
	// the flusher stopped, MaxInt64 so no worker waits).
	flushed atomic.Int64
	mu      sync.Mutex
	ended   *sync.Cond
}

// flushEvery wraps prog so that w is flushed every `every` contents until stop is called;
// every <= 0 never flushes.
func flushEvery(ctx context.Context, w repo.RepositoryWriter, prog upload.Progress, every int64) (*contentFlusher, func()) {
	f := &contentFlusher{Progress: prog, w: w, every: every, kick: make(chan struct{}, 1)}
	f.ended = sync.NewCond(&f.mu)
	if every <= 0 {
		return f, func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	f.done.Add(1)
	go func() {
		defer f.done.Done()
		defer f.flushEnded(0, true)
		for {
			select {
			case <-ctx.Done():
				return
			case <-f.kick:
			}
			// A failed flush is not the backup's end: its packs are retried by the next flush,
			// and the session's last flush reports what still fails.
			began := f.written.Load()
			_ = f.w.Flush(ctx)
			f.flushEnded(began, false)
		}
	}()
	return f, func() { cancel(); f.done.Wait() }
}

// flushEnded records that a flush begun at `began` contents ended (or, stop, that no flush
// will come) and wakes the workers waiting for one.
func (f *contentFlusher) flushEnded(began int64, stop bool) {
	f.mu.Lock()
	if stop {
		began = math.MaxInt64
	}
	if began > f.flushed.Load() {
		f.flushed.Store(began)
	}
	f.mu.Unlock()
	f.ended.Broadcast()
}

// FinishedHashingFile: a hashed file wrote (or found) its content.
func (f *contentFlusher) FinishedHashingFile(fname string, numBytes int64) {
	f.Progress.FinishedHashingFile(fname, numBytes)
	f.count()
}

// FinishedDirectory: a directory wrote its manifest.
func (f *contentFlusher) FinishedDirectory(dirname string) {
	f.Progress.FinishedDirectory(dirname)
	f.count()
}

func (f *contentFlusher) count() {
	if f.every <= 0 {
		return
	}
	n := f.written.Add(1)
	if n%f.every == 0 {
		select {
		case f.kick <- struct{}{}:
		default: // a flush is due already
		}
	}
	// A kick was sent (or found one pending) at each multiple of every since the last flush
	// began, so a flush is under way or due: wait for it.
	if n-f.flushed.Load() <= 2*f.every {
		return
	}
	f.mu.Lock()
	for n-f.flushed.Load() > 2*f.every {
		f.ended.Wait()
	}
	f.mu.Unlock()
}
