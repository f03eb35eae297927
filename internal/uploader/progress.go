package uploader

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/kopia/kopia/snapshot/upload"

	"github.com/ferry-backup/ferry/api/shared"
)

// Progress is a snapshot of a running backup or restore.
type Progress struct {
	// TotalBytes and TotalFiles are the size of the source: an estimate while a backup runs
	// (Estimated), which never shrinks and is raised when what was done exceeds it; what was done
	// once the work completed. Before a backup has an estimate they are what was done so far.
	TotalBytes, TotalFiles int64
	// Estimated is true while the totals are an estimate (the source's walk or the parent
	// snapshot's size).
	Estimated bool
	// BytesDone and FilesDone count what was processed: hashed or found unchanged for a backup,
	// written for a restore.
	BytesDone, FilesDone int64
	// BytesHashed and FilesHashed count what a backup read and hashed; BytesCached and
	// FilesCached what it found unchanged since the parent snapshot (not read).
	BytesHashed, FilesHashed int64
	BytesCached, FilesCached int64
	// BytesUploaded counts bytes written to the repository's storage (backups).
	BytesUploaded int64
	// BytesPerSecond is the rate of BytesDone since the operation started.
	BytesPerSecond int64
	// Stage is the step the work is at.
	Stage shared.ProgressStage
}

// Status is the progress as the status of a PodVolumeBackup, DataUpload, PodVolumeRestore or
// DataDownload records it.
func (p Progress) Status() shared.DataMoveOperationProgress {
	return shared.DataMoveOperationProgress{
		TotalBytes: p.TotalBytes, BytesDone: p.BytesDone, IncrementalBytes: p.BytesUploaded,
		TotalFiles: p.TotalFiles, FilesDone: p.FilesDone, BytesPerSecond: p.BytesPerSecond,
		Stage: p.Stage, Estimated: &p.Estimated,
		BytesHashed: p.BytesHashed, FilesHashed: p.FilesHashed, BytesCached: p.BytesCached, FilesCached: p.FilesCached,
	}
}

// Progress is the status progress of the completed backup: stage Done, the totals what was done.
func (s Stats) Progress() shared.DataMoveOperationProgress {
	return shared.DataMoveOperationProgress{
		TotalBytes: s.Bytes, BytesDone: s.Bytes, IncrementalBytes: s.UploadedBytes, TotalFiles: s.Files, FilesDone: s.Files,
		Stage: shared.ProgressStageDone, Estimated: new(bool), BytesHashed: s.HashedBytes, FilesHashed: max(0, s.Files-s.CachedFiles),
		BytesCached: s.CachedBytes, FilesCached: s.CachedFiles,
	}
}

// DefaultProgressInterval is how often a progress callback runs at most.
const DefaultProgressInterval = time.Second

// reporter calls a progress callback at most once per interval once it runs, and once more at
// the end.
type reporter struct {
	callback func(Progress)
	interval time.Duration
	start    time.Time
	stop     chan struct{}
	wg       sync.WaitGroup

	totalBytes, totalFiles, bytesDone, filesDone, bytesUploaded atomic.Int64
	bytesHashed, bytesCached, filesCached                       atomic.Int64
	estimated                                                   atomic.Bool
	stage                                                       atomic.Value // shared.ProgressStage

	// mu guards the figures last reported, which the next report never goes below.
	mu                                  sync.Mutex
	shownBytes, shownFiles, shownHashed int64
}

func newReporter(callback func(Progress), interval time.Duration, stage shared.ProgressStage) *reporter {
	if interval <= 0 {
		interval = DefaultProgressInterval
	}
	r := &reporter{callback: callback, interval: interval, start: time.Now(), stop: make(chan struct{})}
	r.stage.Store(stage)
	return r
}

// run starts the periodic reports; set the totals known at the start before, so that no report
// goes out without them.
func (r *reporter) run() {
	if r.callback != nil {
		r.wg.Add(1)
		go r.loop()
	}
}

func (r *reporter) loop() {
	defer r.wg.Done()
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			r.callback(r.snapshot())
		}
	}
}

// setStage moves the work to stage.
func (r *reporter) setStage(stage shared.ProgressStage) { r.stage.Store(stage) }

// estimate sets the estimated totals.
func (r *reporter) estimate(files, bytes int64) {
	r.totalFiles.Store(files)
	r.totalBytes.Store(bytes)
	r.estimated.Store(true)
	r.stage.CompareAndSwap(shared.ProgressStageScanning, shared.ProgressStageUploading)
}

// snapshot reads the figures: the totals never go below what was reported before or below what
// was done, so that done <= total and the total does not shrink while the work runs.
func (r *reporter) snapshot() Progress {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := Progress{
		FilesCached: r.filesCached.Load(), BytesCached: r.bytesCached.Load(), BytesHashed: r.bytesHashed.Load(),
		BytesDone: r.bytesDone.Load(), FilesDone: r.filesDone.Load(),
		BytesUploaded: r.bytesUploaded.Load(), Estimated: r.estimated.Load(), Stage: r.stage.Load().(shared.ProgressStage),
	}
	if secs := time.Since(r.start).Seconds(); secs > 0 {
		p.BytesPerSecond = int64(float64(p.BytesDone) / secs)
	}
	// A cached file is counted cached just before it is counted done: a read between the two
	// must not make the hashed count go back.
	p.FilesHashed = max(r.shownHashed, p.FilesDone-p.FilesCached)
	r.shownHashed = p.FilesHashed
	p.TotalBytes = max(r.totalBytes.Load(), p.BytesDone, r.shownBytes)
	p.TotalFiles = max(r.totalFiles.Load(), p.FilesDone, r.shownFiles)
	r.shownBytes, r.shownFiles = p.TotalBytes, p.TotalFiles
	return p
}

// finish stops the ticker and reports the final state; complete means the totals are now known
// to be what was done (the one time the total may go down: an estimate above the truth).
func (r *reporter) finish(complete bool) Progress {
	close(r.stop)
	r.wg.Wait()
	if complete {
		r.mu.Lock()
		r.totalBytes.Store(r.bytesDone.Load())
		r.totalFiles.Store(r.filesDone.Load())
		r.shownBytes, r.shownFiles = 0, 0
		r.estimated.Store(false)
		r.mu.Unlock()
	}
	p := r.snapshot()
	if r.callback != nil {
		r.callback(p)
	}
	return p
}

// uploadProgress adapts Kopia's upload events to the reporter and keeps the first errors.
type uploadProgress struct {
	upload.NullUploadProgress
	r *reporter

	// estimate makes Kopia walk the source first to learn its size; not needed when the parent
	// snapshot already tells it.
	estimate bool

	mu     sync.Mutex
	errors []string
	count  int
}

// maxErrorsKept bounds how many per-file error messages a result carries.
const maxErrorsKept = 10

// Enabled tells Kopia whether to run its size estimation (its only use of it).
func (p *uploadProgress) Enabled() bool { return p.estimate }

func (p *uploadProgress) EstimatedDataSize(fileCount, totalBytes int64) {
	p.r.estimate(fileCount, totalBytes)
}

func (p *uploadProgress) CachedFile(_ string, size int64) {
	p.r.filesCached.Add(1)
	p.r.bytesCached.Add(size)
	p.r.bytesDone.Add(size)
}

func (p *uploadProgress) HashedBytes(n int64) {
	p.r.bytesHashed.Add(n)
	p.r.bytesDone.Add(n)
}

func (p *uploadProgress) FinishedFile(string, error) { p.r.filesDone.Add(1) }

// uploaded is the write session's OnUpload: bytes written to storage.
func (p *uploadProgress) uploaded(n int64) { p.r.bytesUploaded.Add(n) }

func (p *uploadProgress) Error(path string, err error, isIgnored bool) {
	if isIgnored {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.count++
	if len(p.errors) < maxErrorsKept {
		p.errors = append(p.errors, path+": "+err.Error())
	}
}

func (p *uploadProgress) errorSummary() (int, []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.count, append([]string(nil), p.errors...)
}
