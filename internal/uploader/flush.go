package uploader

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/kopia/kopia/repo"
	"github.com/kopia/kopia/snapshot/upload"
)

// DefaultFlushContents is how many contents (hashed files and directories) a backup writes
// before it flushes them to the store. Kopia keeps, for every content written since the last
// flush, its index entry in memory twice (in the pending pack and in the index to write), about
// 400 bytes a content, and flushes on its own only every 10 minutes: a volume of millions of
// small files would hold them all. Flushing on a count bounds that memory to some 40 MiB
// whatever the number of files, at the price of one index blob per flush (maintenance compacts
// them) and a smaller last pack. Kopia's own checkpoints flush the same way mid-upload, so a
// flush never makes an unfinished snapshot visible.
const DefaultFlushContents = 100_000

// contentFlusher counts the contents an upload writes and flushes the write session every
// `every` of them, from a goroutine of its own so that no upload worker waits for the store.
type contentFlusher struct {
	upload.Progress
	w       repo.RepositoryWriter
	every   int64
	written atomic.Int64
	kick    chan struct{}
	flushes atomic.Int64
	done    sync.WaitGroup
}

// flushEvery wraps prog so that w is flushed every `every` contents until stop is called;
// every <= 0 never flushes.
func flushEvery(ctx context.Context, w repo.RepositoryWriter, prog upload.Progress, every int64) (*contentFlusher, func()) {
	f := &contentFlusher{Progress: prog, w: w, every: every, kick: make(chan struct{}, 1)}
	if every <= 0 {
		return f, func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	f.done.Add(1)
	go func() {
		defer f.done.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case <-f.kick:
			}
			// A failed flush is not the backup's end: its packs are retried by the next flush,
			// and the session's last flush reports what still fails.
			if err := f.w.Flush(ctx); err == nil {
				f.flushes.Add(1)
			}
		}
	}()
	return f, func() { cancel(); f.done.Wait() }
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
	if f.every > 0 && f.written.Add(1)%f.every == 0 {
		select {
		case f.kick <- struct{}{}:
		default: // a flush is due already
		}
	}
}
