package uploader

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/kopia/kopia/snapshot/upload"
)

// Progress is a snapshot of a running backup or restore.
type Progress struct {
	// TotalBytes and TotalFiles are the size of the source (estimated while a backup walks it).
	TotalBytes, TotalFiles int64
	// BytesDone and FilesDone count what was processed: hashed or found unchanged for a backup,
	// written for a restore.
	BytesDone, FilesDone int64
	// BytesUploaded counts bytes written to the repository's storage (backups).
	BytesUploaded int64
	// BytesPerSecond is the rate of BytesDone since the operation started.
	BytesPerSecond int64
}

// DefaultProgressInterval is how often a progress callback runs at most.
const DefaultProgressInterval = time.Second

// reporter calls a progress callback at most once per interval, and once more at the end.
type reporter struct {
	callback func(Progress)
	interval time.Duration
	start    time.Time
	stop     chan struct{}
	wg       sync.WaitGroup

	totalBytes, totalFiles, bytesDone, filesDone, bytesUploaded atomic.Int64
}

func newReporter(callback func(Progress), interval time.Duration) *reporter {
	if interval <= 0 {
		interval = DefaultProgressInterval
	}
	r := &reporter{callback: callback, interval: interval, start: time.Now(), stop: make(chan struct{})}
	if callback != nil {
		r.wg.Add(1)
		go r.loop()
	}
	return r
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

func (r *reporter) snapshot() Progress {
	p := Progress{
		TotalBytes: r.totalBytes.Load(), TotalFiles: r.totalFiles.Load(),
		BytesDone: r.bytesDone.Load(), FilesDone: r.filesDone.Load(),
		BytesUploaded: r.bytesUploaded.Load(),
	}
	if secs := time.Since(r.start).Seconds(); secs > 0 {
		p.BytesPerSecond = int64(float64(p.BytesDone) / secs)
	}
	// An estimate can trail what was already processed; never report more done than total.
	p.TotalBytes, p.TotalFiles = max(p.TotalBytes, p.BytesDone), max(p.TotalFiles, p.FilesDone)
	return p
}

// finish stops the ticker and reports the final state; complete means the totals are now known
// to be what was done.
func (r *reporter) finish(complete bool) Progress {
	close(r.stop)
	r.wg.Wait()
	if complete {
		r.totalBytes.Store(r.bytesDone.Load())
		r.totalFiles.Store(r.filesDone.Load())
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

	hashed, cached atomic.Int64
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
	p.r.totalFiles.Store(fileCount)
	p.r.totalBytes.Store(totalBytes)
}

func (p *uploadProgress) CachedFile(_ string, size int64) {
	p.cached.Add(size)
	p.r.bytesDone.Add(size)
}

func (p *uploadProgress) HashedBytes(n int64) {
	p.hashed.Add(n)
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
