package uploader

import (
	"context"
	"fmt"
	"path"
	"sync"
	"sync/atomic"

	"github.com/kopia/kopia/fs"
)

// restoreWalk writes a snapshot's tree through a treeOutput: walkers go through the directories
// depth first (up to parallel of them, each on a subtree of its own) and hand each file and
// symlink to parallel writers through a short queue, so what a restore holds is the listings of
// the directories on the walkers' paths and the queue — not the tree. Kopia's own restore
// (restore.Entry) queues every directory ahead of every file, so it holds an entry for each file
// of the snapshot before it writes most of them: 2M files of 100 B took a restore past 509 MiB
// and an OOM kill in a 512 MiB container (docs/performance.md).
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
	// listed counts the directories whose entries were read.
	listed atomic.Int64

	jobs chan walkJob
	// walkers are tokens for goroutines that walk a subdirectory beside the first walker: listing
	// a directory reads it from the repository, which with many small directories is most of
	// the work. At most parallel walkers in all, each depth first.
	walkers chan struct{}
	walking sync.WaitGroup
	fail    func(error)
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

// firstFileWritten, when set (tests), is told how many directories the walk had listed when its
// first file was written.
var firstFileWritten func(dirsListed int64)

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
	w.fail = func(err error) {
		once.Do(func() { first = err })
		cancel(err)
	}
	w.jobs = make(chan walkJob, w.parallel*walkQueue)
	w.walkers = make(chan struct{}, w.parallel-1)
	var wg sync.WaitGroup
	for range w.parallel {
		wg.Go(func() {
			for j := range w.jobs {
				if ctx.Err() != nil {
					continue // drain: the walk failed or was canceled
				}
				if err := w.write(ctx, j); err != nil {
					w.fail(err)
				}
			}
		})
	}
	if err := w.directory(ctx, root, "", nil); err != nil {
		w.fail(err)
	}
	w.walking.Wait()
	close(w.jobs)
	wg.Wait()
	return first
}

// directory walks the directory rel, made already unless it is the root: it makes the
// subdirectories first, as Kopia's restore does (made only as the walk entered each, 100,000
// files in 100 directories took 37–66 s on ext4 here, nearly all of it system time in creating
// the files, against 10–32 s made first; our guess is ext4's placement of directories made among
// their parent's new files), hands the files and symlinks to the writers, then walks the
// subdirectories.
func (w *restoreWalk) directory(ctx context.Context, d fs.Directory, rel string, parent *walkDir) error {
	if parent == nil {
		if err := w.out.BeginDirectory(ctx, rel, d); err != nil {
			return fmt.Errorf("create directory %q: %w", rel, err)
		}
		w.dirs.Add(1)
	}
	entries, err := fs.GetAllEntries(ctx, d)
	if err != nil {
		return fmt.Errorf("read directory %q: %w", rel, err)
	}
	w.listed.Add(1)
	wd := &walkDir{rel: rel, d: d, parent: parent}
	wd.pending.Store(int64(len(entries)) + 1)
	for _, e := range entries {
		if sub, ok := e.(fs.Directory); ok {
			if err := w.out.BeginDirectory(ctx, path.Join(rel, e.Name()), sub); err != nil {
				return fmt.Errorf("create directory %q: %w", path.Join(rel, e.Name()), err)
			}
			w.dirs.Add(1)
		}
	}
	for _, e := range entries {
		if _, ok := e.(fs.Directory); ok {
			continue
		}
		select {
		case w.jobs <- walkJob{entry: e, rel: path.Join(rel, e.Name()), dir: wd}:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	for _, e := range entries {
		sub, ok := e.(fs.Directory)
		if !ok {
			continue
		}
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		child := path.Join(rel, e.Name())
		select {
		case w.walkers <- struct{}{}: // a walker is free: it takes the subdirectory
			w.walking.Go(func() {
				defer func() { <-w.walkers }()
				if err := w.directory(ctx, sub, child, wd); err != nil {
					w.fail(err)
				}
			})
		default:
			if err := w.directory(ctx, sub, child, wd); err != nil {
				return err
			}
		}
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
			firstFileWritten(w.listed.Load())
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
