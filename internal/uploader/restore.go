package uploader

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/kopia/kopia/fs"
	"github.com/kopia/kopia/repo"
	"github.com/kopia/kopia/repo/manifest"
	"github.com/kopia/kopia/snapshot"
	"github.com/kopia/kopia/snapshot/restore"
	"github.com/kopia/kopia/snapshot/snapshotfs"
)

// RestoreOptions tune one restore.
type RestoreOptions struct {
	// Parallel is the number of files written at once; default 2 (more was slower on 2 CPUs).
	Parallel int
	// KeepExisting refuses to replace files, directories and symlinks already in the target
	// instead of overwriting them (the default).
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
	// Skipped counts entries already present and identical.
	Skipped  int64
	Duration time.Duration
}

// DefaultRestoreParallel is the number of files a restore writes at once.
const DefaultRestoreParallel = 2

// Restore writes snapshot snapshotID into dir, creating dir if needed. Contents, modes, times,
// symlinks and empty directories are restored, and owners when running as root. No entry is
// written outside dir: names that would climb out, and symlinks already in dir that would
// redirect a write, are refused.
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
	out := &guardedOutput{FilesystemOutput: &restore.FilesystemOutput{
		TargetPath:           target,
		OverwriteDirectories: !opts.KeepExisting,
		OverwriteFiles:       !opts.KeepExisting,
		OverwriteSymlinks:    !opts.KeepExisting,
		SkipOwners:           os.Geteuid() != 0,
		WriteSparseFiles:     opts.WriteSparseFiles,
	}}
	if err := out.Init(ctx); err != nil {
		return RestoreStats{}, fmt.Errorf("restore into %s: %w", target, err)
	}

	rpt := newReporter(opts.Progress, opts.ProgressInterval)
	rpt.totalBytes.Store(man.Stats.TotalFileSize)
	rpt.totalFiles.Store(int64(man.Stats.TotalFileCount))
	parallel := opts.Parallel
	if parallel <= 0 {
		parallel = DefaultRestoreParallel
	}
	cancel := make(chan struct{})
	stop := context.AfterFunc(ctx, func() { close(cancel) })
	st, err := restore.Entry(ctx, rep, out, root, restore.Options{
		Parallel:               parallel,
		RestoreDirEntryAtDepth: math.MaxInt32, // else deep entries become placeholders
		Cancel:                 cancel,
		ProgressCallback: func(_ context.Context, s restore.Stats) {
			rpt.bytesDone.Store(s.RestoredTotalFileSize + s.SkippedTotalFileSize)
			rpt.filesDone.Store(int64(s.RestoredFileCount) + int64(s.SkippedCount))
		},
	})
	stop()
	if err == nil && ctx.Err() != nil {
		err = fmt.Errorf("%w: %w", ErrCanceled, context.Cause(ctx))
	}
	if err == nil {
		err = fixDirectoryTimes(ctx, root, target)
	}
	rpt.finish()
	if err != nil {
		return RestoreStats{}, fmt.Errorf("restore snapshot %s into %s: %w", snapshotID, target, err)
	}
	return RestoreStats{
		Files: int64(st.RestoredFileCount), Dirs: int64(st.RestoredDirCount), Symlinks: int64(st.RestoredSymlinkCount),
		Bytes: st.RestoredTotalFileSize, Skipped: int64(st.SkippedCount), Duration: time.Since(start),
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

// fixDirectoryTimes sets every restored directory's modification time from the snapshot:
// writing files into a directory after it was finished changes its time, and with parallel
// writers that happens (KOPIA-NOTES pitfall 2).
func fixDirectoryTimes(ctx context.Context, root fs.Entry, target string) error {
	dir, ok := root.(fs.Directory)
	if !ok {
		return nil
	}
	var walk func(d fs.Directory, path string) error
	walk = func(d fs.Directory, path string) error {
		err := fs.IterateEntries(ctx, d, func(ctx context.Context, e fs.Entry) error {
			if sub, ok := e.(fs.Directory); ok {
				return walk(sub, filepath.Join(path, e.Name()))
			}
			return nil
		})
		if err != nil {
			return err
		}
		if st, err := os.Lstat(path); err != nil || !st.IsDir() {
			return errors.Join(err, fmt.Errorf("%s is not the restored directory", path))
		}
		return os.Chtimes(path, d.ModTime(), d.ModTime())
	}
	return walk(dir, target)
}
