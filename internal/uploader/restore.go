package uploader

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"time"

	"github.com/kopia/kopia/fs"
	"github.com/kopia/kopia/repo"
	"github.com/kopia/kopia/repo/manifest"
	"github.com/kopia/kopia/repo/object"
	"github.com/kopia/kopia/snapshot"
	"github.com/kopia/kopia/snapshot/snapshotfs"
	"golang.org/x/sys/unix"

	"github.com/ferry-backup/ferry/api/shared"
)

// RestoreOptions tune one restore.
type RestoreOptions struct {
	// Parallel is the number of files written at once, and the number of extra workers that
	// may help write large files; default DefaultRestoreParallel().
	Parallel int
	// KeepExisting refuses to replace files and symlinks already in the target instead of
	// overwriting them (the default). Existing directories are merged into either way.
	KeepExisting bool
	// WriteSparseFiles writes runs of zeros as holes.
	WriteSparseFiles bool
	// Progress is called at most every ProgressInterval and once at the end.
	Progress         func(Progress)
	ProgressInterval time.Duration
}

// RestoreStats describe a finished restore.
type RestoreStats struct {
	Files, Dirs, Symlinks int64
	Bytes                 int64
	Duration              time.Duration
}

// DefaultRestoreParallel returns the number of files a restore writes at once: twice
// GOMAXPROCS (the CPUs this process may use, container limits included) — a writer waits on the
// store and on the disk much of the time — at least 4 and at most 16. It does not depend on the
// number of files: a restore is one pass over the tree, whatever its size.
func DefaultRestoreParallel() int {
	return min(max(2*runtime.GOMAXPROCS(0), minRestoreParallel), maxDefaultRestoreParallel, MaxParallel)
}

const (
	minRestoreParallel        = 4
	maxDefaultRestoreParallel = 16
	// minProcsForSegments is the GOMAXPROCS from which large files are written by several
	// workers (content.go, segmentSize). Each segment re-reads the chunk it starts in, which
	// costs CPU: with 2 CPUs a 100 MiB file restored 1.5x slower in segments (docs/performance.md).
	minProcsForSegments = 4
)

// Restore writes snapshot snapshotID into dir, creating dir if needed. Pass a repository opened
// with repository.Options.NoCache: restores run faster without the local caches. Contents,
// modes, times, symlinks and empty directories are restored, and owners when running as root.
// No byte is written outside dir, even while its owner swaps entries for symlinks: everything
// is written beneath an open handle of dir (see beneath.go and treeOutput). Data is written back
// to disk as the restore goes, and the file system is flushed before Restore returns: a restore
// that returned no error is on disk (writeback.go).
func Restore(ctx context.Context, rep repo.Repository, snapshotID, dir string, opts RestoreOptions) (RestoreStats, error) {
	start := time.Now()
	man, err := snapshot.LoadSnapshot(ctx, rep, manifest.ID(snapshotID))
	if err != nil {
		return RestoreStats{}, fmt.Errorf("load snapshot %s: %w", snapshotID, err)
	}
	root, err := snapshotfs.SnapshotRoot(rep, man)
	if err != nil {
		return RestoreStats{}, fmt.Errorf("open snapshot %s: %w", snapshotID, err)
	}
	target, err := prepareTarget(dir)
	if err != nil {
		return RestoreStats{}, err
	}
	t, err := openTree(target)
	if err != nil {
		return RestoreStats{}, fmt.Errorf("restore into %s: %w", target, err)
	}
	defer t.Close()
	out := &treeOutput{t: t, overwrite: !opts.KeepExisting, direct: !opts.KeepExisting, owners: os.Geteuid() == 0, sparse: opts.WriteSparseFiles}

	rpt := newReporter(opts.Progress, opts.ProgressInterval, shared.ProgressStageRestoring)
	rpt.totalBytes.Store(man.Stats.TotalFileSize)
	rpt.totalFiles.Store(int64(man.Stats.TotalFileCount))
	rpt.run()
	parallel := min(opts.Parallel, MaxParallel)
	if parallel <= 0 {
		parallel = DefaultRestoreParallel()
	}
	out.readers = make(chan struct{}, min(parallel, maxLargeReaders))
	out.segments = runtime.GOMAXPROCS(0) >= minProcsForSegments
	out.flush = startFlusher(t)
	walk := &restoreWalk{out: out, parallel: parallel, progress: func(bytes, files int64) {
		rpt.bytesDone.Add(bytes)
		rpt.filesDone.Add(files)
	}}
	if dir, ok := root.(fs.Directory); ok {
		err = walk.run(ctx, dir)
	} else {
		err = fmt.Errorf("snapshot %s is not of a directory", snapshotID)
	}
	if ctx.Err() != nil {
		err = fmt.Errorf("%w: %w", ErrCanceled, context.Cause(ctx))
	}
	if err == nil {
		err = fixDirectoryTimes(ctx, rep, man, t)
	}
	if err == nil {
		err = finishFlushing(out.flush, t) // Completed means on disk (writeback.go)
	} else {
		_ = out.flush.stop()
	}
	if err == nil {
		rpt.setStage(shared.ProgressStageDone)
	}
	rpt.finish(err == nil)
	if err != nil {
		return RestoreStats{}, fmt.Errorf("restore snapshot %s into %s: %w", snapshotID, target, err)
	}
	return RestoreStats{
		Files: walk.files.Load(), Dirs: walk.dirs.Load(), Symlinks: walk.symlinks.Load(),
		Bytes: walk.bytes.Load(), Duration: time.Since(start),
	}, nil
}

// prepareTarget creates the target directory and refuses a target that is a symlink.
func prepareTarget(dir string) (string, error) {
	target, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(target, 0o755); err != nil {
		return "", fmt.Errorf("create %s: %w", target, err)
	}
	st, err := os.Lstat(target)
	if err != nil {
		return "", err
	}
	if !st.IsDir() {
		return "", fmt.Errorf("restore target %s is not a directory", target)
	}
	return target, nil
}

// fixDirectoryTimes sets every restored directory's modification time to the one stored in
// the snapshot. Kopia's restore leaves a directory with the newest time of its subtree: when it
// loads a listing it replaces each subdirectory's time with that summary value, and writing
// files after a directory was finished moves its time too (KOPIA-NOTES pitfall 2). The true
// values are in the stored listings, read here directly.
func fixDirectoryTimes(ctx context.Context, rep repo.Repository, man *snapshot.Manifest, t *tree) error {
	if man.RootEntry == nil || man.RootEntry.Type != snapshot.EntryTypeDirectory {
		return nil
	}
	var walk func(oid object.ID, rel string, mtime time.Time) error
	walk = func(oid object.ID, rel string, mtime time.Time) error {
		entries, err := storedListing(ctx, rep, oid)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if e.Type != snapshot.EntryTypeDirectory {
				continue
			}
			if err := walk(e.ObjectID, path.Join(rel, e.Name), e.ModTime.ToTime()); err != nil {
				return err
			}
		}
		fd, err := t.open(rel, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return t.pathError("set times of", rel, futimens(fd, mtime))
	}
	return walk(man.RootEntry.ObjectID, "", man.RootEntry.ModTime.ToTime())
}

// storedListing reads a directory object as stored, without Kopia's in-memory adjustments.
func storedListing(ctx context.Context, rep repo.Repository, oid object.ID) ([]*snapshot.DirEntry, error) {
	r, err := rep.OpenObject(ctx, oid)
	if err != nil {
		return nil, fmt.Errorf("open directory %s: %w", oid, err)
	}
	defer r.Close()
	var dir snapshot.DirManifest
	if err := json.NewDecoder(r).Decode(&dir); err != nil {
		return nil, fmt.Errorf("read directory %s: %w", oid, err)
	}
	return dir.Entries, nil
}
