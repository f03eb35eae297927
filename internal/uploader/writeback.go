package uploader

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// A restore writes its data to disk as it goes, and is on disk when it ends.
//
// Left to the kernel, the pages and inodes a restore writes stay dirty until the writeback
// threads get to them (after 30 s, or once a share of the whole machine's memory is dirty).
// Dirty pages and the slab of dirty inodes are charged to the writer's memory cgroup, and
// reclaim cannot free them: a mover pod or node-agent with a memory limit that restored two
// million small files was OOM-killed with only 263 MiB of its own memory in use, its 512 MiB
// filled by the files it had written (docs/performance.md). So:
//
//   - while a restore runs, a flusher flushes the file system (syncfs) each time flushFiles
//     files or flushBytes bytes were written since the last flush, and at least every
//     flushInterval while there was any: what the restore wrote is on disk, clean and
//     reclaimable seconds later. The flusher runs beside the writers, which never wait for it;
//     the kernel's own writeback threads do the I/O, as they would have later;
//   - a large file is written in windows of writebackWindow bytes: when a window is full its
//     writeback starts (sync_file_range), the window before it is waited for and its pages are
//     dropped from the cache (nobody reads a restore back), so a writer holds at most two
//     windows of dirty or in-flight pages of one file;
//   - at the end the file system is flushed once more, so that a restore reported Completed
//     survives the node losing power a moment later. Most data is on disk by then.
//
// syncfs flushes the whole file system the volume is on: for a volume of its own (a CSI block
// volume), the restore's data; for one on the node's disk (hostPath, emptyDir, local), also
// whatever else is dirty there, which the kernel would have written within 30 s anyway.
// sync_file_range and fadvise are advice (no-ops on tmpfs, refused by some network file
// systems): their errors are left to syncfs, which reports any write that failed.

// The flusher's thresholds.
const (
	flushFiles    = 4096
	flushBytes    = 64 << 20
	flushInterval = time.Second
)

// flusher flushes a restore's file system as it writes (see above).
type flusher struct {
	sync        func() error // syncfs of the restore's tree
	files       atomic.Int64 // written since the last flush
	bytes       atomic.Int64
	kick, stopc chan struct{}
	done        chan struct{}
	mu          sync.Mutex
	err         error // the first failed flush: syncfs reports a write error only once
}

// startFlusher starts flushing t's file system as the restore writes.
func startFlusher(t *tree) *flusher {
	return runFlusher(func() error { return unix.Syncfs(t.fd) }, flushInterval)
}

func runFlusher(sync func() error, interval time.Duration) *flusher {
	f := &flusher{sync: sync, kick: make(chan struct{}, 1), stopc: make(chan struct{}), done: make(chan struct{})}
	go f.loop(interval)
	return f
}

// wrote records a file of n bytes written; it never waits.
func (f *flusher) wrote(n int64) {
	files, bytes := f.files.Add(1), f.bytes.Add(n)
	if files >= flushFiles || bytes >= flushBytes {
		select {
		case f.kick <- struct{}{}:
		default: // a flush is already asked for
		}
	}
}

func (f *flusher) loop(interval time.Duration) {
	defer close(f.done)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-f.stopc:
			return
		case <-f.kick:
		case <-tick.C:
		}
		files, bytes := f.files.Swap(0), f.bytes.Swap(0)
		if files == 0 && bytes == 0 {
			continue
		}
		if err := f.sync(); err != nil {
			f.mu.Lock()
			if f.err == nil {
				f.err = err
			}
			f.mu.Unlock()
		}
	}
}

// stop ends the flusher and returns the first error of its flushes.
func (f *flusher) stop() error {
	close(f.stopc)
	<-f.done
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// writebackWindow is how many bytes of a large file one writer lets the kernel buffer.
const writebackWindow = 8 << 20

// startWriteback starts writing fd's dirty pages in [off, off+n) to disk without waiting
// (n = 0: to the end of the file).
func startWriteback(fd int, off, n int64) {
	_ = unix.SyncFileRange(fd, off, n, unix.SYNC_FILE_RANGE_WRITE)
}

// finishWriteback waits until fd's pages in [off, off+n) are on disk, then drops them from the
// page cache.
func finishWriteback(fd int, off, n int64) {
	err := unix.SyncFileRange(fd, off, n, unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER)
	if err == nil {
		_ = unix.Fadvise(fd, off, n, unix.FADV_DONTNEED)
	}
}

// windows tracks one writer's progress through a range of a file, starting writeback of each
// full window and finishing the one before it.
type windows struct {
	fd int
	// start is where the current window begins; next is how far the writer has written.
	start, next int64
	// pending is the window whose writeback was started and not yet waited for (n = 0: none).
	pendingOff, pendingLen int64
}

func newWindows(fd int, off int64) windows { return windows{fd: fd, start: off, next: off} }

// wrote records that the writer wrote up to end.
func (w *windows) wrote(end int64) {
	w.next = end
	if w.next-w.start < writebackWindow {
		return
	}
	startWriteback(w.fd, w.start, w.next-w.start)
	if w.pendingLen > 0 {
		finishWriteback(w.fd, w.pendingOff, w.pendingLen)
	}
	w.pendingOff, w.pendingLen = w.start, w.next-w.start
	w.start = w.next
}

// finishFlushing stops f and flushes t's file system a last time: nil when everything the
// restore wrote is on disk.
func finishFlushing(f *flusher, t *tree) error {
	err := f.stop()
	if err == nil {
		err = unix.Syncfs(t.fd)
	}
	if err != nil {
		return fmt.Errorf("flush the restored data to disk (syncfs %s): %w", t.path, err)
	}
	return nil
}
