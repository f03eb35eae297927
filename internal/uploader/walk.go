package uploader

import (
	"context"
	"fmt"
	"path"
	"sync"
	"sync/atomic"

	"github.com/kopia/kopia/fs"
)

// restoreWalk writes a snapshot's tree through a treeOutput: one goroutine walks the directories
// depth first and hands each file and symlink to parallel writers through a short queue, so
// what a restore holds is the listings of the directories on the current path and the queue —
// not the tree. Kopia's own restore (restore.Entry) queues every directory ahead of every file,
// so it holds an entry for each file of the snapshot before it writes most of them: 2M files of
// 100 B took a restore past 509 MiB and an OOM kill in a 512 MiB container
// (docs/performance.md).
//
// A directory gets its attributes (FinishDirectory) once everything in it is written, as with
// Kopia's restore. The first error stops the walk and is returned; a canceled ctx stops it
// quietly (the caller reports the cancellation).
type restoreWalk struct {
	out      *treeOutput
	parallel int
	// progress is called with the bytes of each chunk written and once per file (files = 1),
	// from any writer. Symlinks are not counted: snapshots count files apart from them.
	progress func(bytes, files int64)

	files, dirs, symlinks, bytes atomic.Int64

	jobs chan walkJob
}

type walkJob struct {
	entry fs.Entry
	rel   string
	dir   *walkDir
}

// walkDir counts what is still to be written in a directory: its entries, and one hold of the
// walker's until it has listed them all.
type walkDir struct {
	rel     string
	d       fs.Directory
	parent  *walkDir
	pending atomic.Int64
}

// firstFileWritten, when set (tests), is told how many directories the walk had begun when its
// first file was written.
var firstFileWritten func(dirsBegun int64)

// walkQueue is how many entries per writer wait in the queue.
const walkQueue = 64

// run restores the tree of root and returns the first error.
func (w *restoreWalk) run(ctx context.Context, root fs.Directory) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		first error
		once  sync.Once
	)
	fail := func(err error) {
		once.Do(func() { first = err })
		cancel(err)
	}
	w.jobs = make(chan walkJob, w.parallel*walkQueue)
	var wg sync.WaitGroup
	for range w.parallel {
		wg.Go(func() {
			for j := range w.jobs {
				if ctx.Err() != nil {
					continue // drain: the walk failed or was canceled
				}
				if err := w.write(ctx, j); err != nil {
					fail(err)
				}
			}
		})
	}
	if err := w.directory(ctx, root, "", nil); err != nil {
		fail(err)
	}
	close(w.jobs)
	wg.Wait()
	return first
}

// directory makes the directory rel, then walks its entries: subdirectories now, files and
// symlinks through the queue.
func (w *restoreWalk) directory(ctx context.Context, d fs.Directory, rel string, parent *walkDir) error {
	if err := w.out.BeginDirectory(ctx, rel, d); err != nil {
		return fmt.Errorf("create directory %q: %w", rel, err)
	}
	w.dirs.Add(1)
	wd := &walkDir{rel: rel, d: d, parent: parent}
	wd.pending.Store(1)
	var inner error // from an entry, not from reading the listing
	err := fs.IterateEntries(ctx, d, func(ctx context.Context, e fs.Entry) error {
		child := path.Join(rel, e.Name())
		wd.pending.Add(1)
		if sub, ok := e.(fs.Directory); ok {
			inner = w.directory(ctx, sub, child, wd)
			return inner
		}
		select {
		case w.jobs <- walkJob{entry: e, rel: child, dir: wd}:
			return nil
		case <-ctx.Done():
			inner = context.Cause(ctx)
			return inner
		}
	})
	if inner != nil {
		return inner
	}
	if err != nil {
		return fmt.Errorf("read directory %q: %w", rel, err)
	}
	return w.release(ctx, wd)
}

// write writes one file or symlink, then releases its directory.
func (w *restoreWalk) write(ctx context.Context, j walkJob) error {
	switch e := j.entry.(type) {
	case fs.File:
		written := int64(0)
		err := w.out.WriteFile(ctx, j.rel, e, func(n int64) {
			written += n
			w.bytes.Add(n)
			w.progress(n, 0)
		})
		if err != nil {
			return fmt.Errorf("copy file: %w", err)
		}
		w.bytes.Add(e.Size() - written) // as Kopia counts a file whose size changed
		w.progress(e.Size()-written, 1)
		if files := w.files.Add(1); files == 1 && firstFileWritten != nil {
			firstFileWritten(w.dirs.Load())
		}
	case fs.Symlink:
		w.symlinks.Add(1)
		if err := w.out.CreateSymlink(ctx, j.rel, e); err != nil {
			return fmt.Errorf("create symlink: %w", err)
		}
	default:
		return fmt.Errorf("invalid entry type for %q: %T", j.rel, j.entry)
	}
	return w.release(ctx, j.dir)
}

// release drops one pending item of d; the last one finishes d and releases its parent's.
func (w *restoreWalk) release(ctx context.Context, d *walkDir) error {
	for ; d != nil && d.pending.Add(-1) == 0; d = d.parent {
		if err := w.out.FinishDirectory(ctx, d.rel, d.d); err != nil {
			return fmt.Errorf("finish directory %q: %w", d.rel, err)
		}
	}
	return nil
}
