package uploader

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/kopia/kopia/repo"
	"github.com/kopia/kopia/repo/manifest"
	"github.com/kopia/kopia/snapshot"
	"github.com/kopia/kopia/snapshot/policy"
	"github.com/kopia/kopia/snapshot/upload"

	"github.com/ferry-backup/ferry/api/shared"
)

// BackupOptions tune one backup.
type BackupOptions struct {
	// Source names what is backed up, e.g. "/<namespace>/<pvc>". Snapshots of the same source
	// (and repository identity) are each other's parents. Default: the directory's path.
	Source string
	// Parent is the snapshot to compare against; default: the latest of the same source.
	Parent string
	// Parallel is the number of files read and uploaded at once (parallelFilesUpload); default:
	// the CPUs the process may use (GOMAXPROCS, which follows the container's CPU limit).
	Parallel int
	// Tags are stored on the snapshot (backup name, namespace, PVC, pod volume, location).
	Tags map[string]string
	// Description and Pins are stored on the snapshot (Velero's layout: AsVelero).
	Description string
	Pins        []string
	// Progress is called at most every ProgressInterval and once at the end.
	Progress         func(Progress)
	ProgressInterval time.Duration
	// CheckpointInterval is how often a checkpoint is saved, from which an interrupted backup
	// resumes without re-reading what it already uploaded (default 5m, at most 45m).
	CheckpointInterval time.Duration
	// FlushContents is how many contents are written between two flushes to the store, which
	// bounds the memory of a backup of many small files (default DefaultFlushContents; negative:
	// only Kopia's own flushes).
	FlushContents int64
	// FlushTimeout bounds saving the checkpoint once ctx ended: the upload stops at once, and
	// the checkpoint and the data uploaded so far must be written within this time, or the
	// backup gives up on them (default DefaultFlushTimeout).
	FlushTimeout time.Duration
}

// Stats describe a finished backup.
type Stats struct {
	// Files counts files and symlinks.
	Files, Dirs int64
	// Bytes is the size of all files in the snapshot.
	Bytes int64
	// HashedBytes were read and hashed; CachedBytes were unchanged since the parent and not read;
	// CachedFiles counts those files.
	HashedBytes, CachedBytes int64
	CachedFiles              int64
	// UploadedBytes were written to the repository's storage (after dedup, compression, encryption).
	UploadedBytes int64
	// Errors counts entries that could not be read; ErrorMessages holds the first few.
	Errors        int
	ErrorMessages []string
	// NotPreserved counts entries backed up without some of their metadata: hard links,
	// extended attributes, names that are not valid UTF-8 (metadata.go).
	NotPreserved NotPreserved
	Duration     time.Duration
}

// BackupResult is the outcome of a backup.
type BackupResult struct {
	SnapshotID string
	// ParentID is the snapshot the backup was incremental against, if any.
	ParentID string
	Stats    Stats
}

// ErrCanceled is returned (wrapped with the context's error) when a backup or restore stopped
// because its context ended. A backup saves a checkpoint first, so the next one resumes.
var ErrCanceled = errors.New("canceled")

// MaxParallel bounds the files one backup or restore reads or writes at once, whatever
// parallelFilesUpload, parallelFilesDownload or the node count asks: each worker holds buffers
// and open files, and a Backup's author (not the node's admin) chooses the first.
const MaxParallel = 32

// DefaultCheckpointInterval is how often a running backup saves a checkpoint.
const DefaultCheckpointInterval = 5 * time.Minute

// DefaultFlushTimeout is how long a canceled backup may take to save its checkpoint.
const DefaultFlushTimeout = 2 * time.Minute

// errFlushTimeout ends the write session of a canceled backup whose checkpoint took too long.
var errFlushTimeout = errors.New("the checkpoint was not saved in time")

// Backup snapshots dir into the repository.
func Backup(ctx context.Context, rep repo.Repository, dir string, opts BackupOptions) (BackupResult, error) {
	start := time.Now()
	t, err := openTree(dir)
	if err != nil {
		return BackupResult{}, fmt.Errorf("back up %s: not a readable directory: %w", dir, err)
	}
	defer t.Close()
	t.meta = newMetadataReport()
	root, err := sourceRoot(t)
	if err != nil {
		return BackupResult{}, fmt.Errorf("back up %s: %w", dir, err)
	}
	source := snapshot.SourceInfo{Host: rep.ClientOptions().Hostname, UserName: rep.ClientOptions().Username, Path: opts.Source}
	if source.Path == "" {
		source.Path = dir
	}
	previous, err := previousManifests(ctx, rep, source, opts.Parent)
	if err != nil {
		return BackupResult{}, err
	}
	policyTree, err := policy.TreeForSource(ctx, rep, source)
	if err != nil {
		return BackupResult{}, fmt.Errorf("read policy: %w", err)
	}

	parent := latestComplete(previous)
	stage := shared.ProgressStageScanning
	if parent != nil {
		stage = shared.ProgressStageUploading
	}
	rpt := newReporter(opts.Progress, opts.ProgressInterval, stage)
	prog := &uploadProgress{r: rpt, estimate: parent == nil}
	if parent != nil {
		// The parent's size is a good estimate and saves Kopia a walk of the whole source.
		// Kopia counts the files it found unchanged apart from the others.
		rpt.estimate(int64(parent.Stats.TotalFileCount)+int64(parent.Stats.CachedFiles), parent.Stats.TotalFileSize)
	}
	rpt.run()
	var man *snapshot.Manifest
	var id manifest.ID
	var sessionErr error
	// The write session must outlive ctx: when ctx ends, the upload is canceled and what was
	// uploaded so far is saved as a checkpoint and flushed, for at most FlushTimeout; so is it
	// when the upload fails.
	wctx, flushing, stopFlush := flushContext(ctx, opts.FlushTimeout)
	defer stopFlush()
	err = repo.WriteSession(wctx, rep, repo.WriteSessionOptions{Purpose: "ferry: backup", FlushOnFailure: true, OnUpload: prog.uploaded},
		func(wctx context.Context, w repo.RepositoryWriter) error {
			flusher, stopFlusher := flushEvery(wctx, w, prog, cmp.Or(opts.FlushContents, DefaultFlushContents))
			defer stopFlusher()
			u := newUploader(w, opts, flusher)
			stop := context.AfterFunc(ctx, u.Cancel)
			defer stop()
			man, err = u.Upload(wctx, root, policyTree, source, previous...)
			stopFlusher()
			if err != nil {
				sessionErr = fmt.Errorf("upload %s: %w", dir, err)
				flushing()
				return sessionErr
			}
			rpt.setStage(shared.ProgressStageFlushing)
			man.Tags, man.Description, man.Pins = opts.Tags, opts.Description, opts.Pins
			if id, err = snapshot.SaveSnapshot(wctx, w, man); err != nil {
				sessionErr = fmt.Errorf("save snapshot: %w", err)
				flushing()
				return sessionErr
			}
			return nil
		})
	err = sessionError(wctx, sessionErr, err)
	rpt.setStage(shared.ProgressStageFinalizing)
	final := rpt.finish(err == nil && man.IncompleteReason == "")
	if err != nil && ctx.Err() != nil {
		return BackupResult{}, fmt.Errorf("back up %s: %w (%w): %w", dir, ErrCanceled, context.Cause(ctx), err)
	}
	if err != nil {
		return BackupResult{}, err
	}
	if man.IncompleteReason != "" {
		return BackupResult{}, fmt.Errorf("back up %s: %w (%s; checkpoint %s saved): %w", dir, ErrCanceled, man.IncompleteReason, id, context.Cause(ctx))
	}
	res := BackupResult{SnapshotID: string(id), Stats: statsOf(man, prog, final, time.Since(start))}
	res.Stats.NotPreserved = t.meta.result()
	if parent := latestComplete(previous); parent != nil {
		res.ParentID = string(parent.ID)
	}
	return res, nil
}

// latestComplete returns the newest snapshot that is not a checkpoint.
func latestComplete(previous []*snapshot.Manifest) *snapshot.Manifest {
	var latest *snapshot.Manifest
	for _, p := range previous {
		if p.IncompleteReason == "" && (latest == nil || p.StartTime.After(latest.StartTime)) {
			latest = p
		}
	}
	return latest
}

func newUploader(w repo.RepositoryWriter, opts BackupOptions, prog upload.Progress) *upload.Uploader {
	u := upload.NewUploader(w)
	u.Progress = prog
	u.ParallelUploads = min(opts.Parallel, MaxParallel)
	if u.ParallelUploads <= 0 {
		u.ParallelUploads = min(runtime.GOMAXPROCS(0), MaxParallel)
	}
	u.CheckpointInterval = opts.CheckpointInterval
	if u.CheckpointInterval <= 0 {
		u.CheckpointInterval = DefaultCheckpointInterval
	}
	u.CheckpointInterval = min(u.CheckpointInterval, upload.DefaultCheckpointInterval)
	u.CheckpointLabels = opts.Tags
	return u
}

// previousManifests returns the snapshots to compare against: the requested parent, or the
// latest complete snapshot of the source plus any newer checkpoint (to resume from).
func previousManifests(ctx context.Context, rep repo.Repository, source snapshot.SourceInfo, parent string) ([]*snapshot.Manifest, error) {
	if parent != "" {
		m, err := snapshot.LoadSnapshot(ctx, rep, manifest.ID(parent))
		if err != nil {
			return nil, fmt.Errorf("load parent snapshot %s: %w", parent, err)
		}
		return []*snapshot.Manifest{m}, nil
	}
	prev, err := snapshot.FindPreviousManifests(ctx, rep, source, nil)
	if err != nil {
		return nil, fmt.Errorf("find previous snapshots of %s: %w", source, err)
	}
	return prev, nil
}

func statsOf(man *snapshot.Manifest, prog *uploadProgress, final Progress, d time.Duration) Stats {
	errCount, errs := prog.errorSummary()
	return Stats{
		Files: final.FilesDone, Dirs: int64(man.Stats.TotalDirectoryCount),
		Bytes: man.Stats.TotalFileSize, HashedBytes: final.BytesHashed, CachedBytes: final.BytesCached, CachedFiles: final.FilesCached,
		UploadedBytes: final.BytesUploaded, Errors: max(errCount, int(man.Stats.ErrorCount)), ErrorMessages: errs,
		Duration: d,
	}
}

// flushContext returns the context of a backup's write session, which outlives ctx, and a
// function that gives the session timeout (default DefaultFlushTimeout) more to save the
// checkpoint: when ctx ends, or when the upload failed.
func flushContext(ctx context.Context, timeout time.Duration) (context.Context, func(), func()) {
	if timeout <= 0 {
		timeout = DefaultFlushTimeout
	}
	wctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	var once sync.Once
	startTimer := func() {
		once.Do(func() {
			t := time.AfterFunc(timeout, func() {
				cancel(fmt.Errorf("%w within %s of the cancel or failure", errFlushTimeout, timeout))
			})
			context.AfterFunc(wctx, func() { t.Stop() })
		})
	}
	stop := context.AfterFunc(ctx, startTimer)
	return wctx, startTimer, func() {
		stop()
		cancel(nil)
	}
}

// sessionError is the error of a backup's write session: what made the session fail
// (sessionErr) and, when saving the checkpoint failed too, why (err).
func sessionError(wctx context.Context, sessionErr, err error) error {
	if err == nil {
		return nil
	}
	if cause := context.Cause(wctx); errors.Is(cause, errFlushTimeout) {
		err = fmt.Errorf("%w: %w", cause, err)
	}
	if sessionErr != nil && !errors.Is(err, sessionErr) {
		// The session reports the failed flush of the checkpoint, not what made it flush.
		return fmt.Errorf("%w; then saving the checkpoint: %w", sessionErr, err)
	}
	return err
}
