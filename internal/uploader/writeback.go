package uploader

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// A restore writes its data to disk as it goes, and is on disk when it ends.
//
// Left to the kernel, the pages a restore writes stay dirty until the writeback threads get to
// them (up to 30 s, or a share of the machine's memory). Dirty pages are charged to the
// writer's memory cgroup, and under cgroup v1 reclaim cannot write them back: a node-agent or
// mover pod with a memory limit that restored two million small files was OOM-killed with only
// 263 MiB of its own memory in use, its 512 MiB filled by the dirty pages and inodes of the
// files it had written (docs/performance.md). So:
//
//   - every file, once written, has its writeback started (sync_file_range WRITE: the call
//     queues the I/O and returns); its pages become clean, and reclaimable, as the disk takes
//     them;
//   - a large file is written in windows of writebackWindow bytes: when a window is full its
//     writeback starts, the window before it is waited for and its pages are dropped from the
//     cache (nobody reads a restore back), so a writer holds at most two windows of dirty or
//     in-flight pages;
//   - at the end the whole file system is flushed (syncfs), so that a restore reported
//     Completed survives the node losing power a moment later. Most data is on disk by then.
//
// The first two are advice to the kernel: a file system that does not support them (they are
// no-ops on tmpfs, refused by some network file systems) restores as before, and their errors
// are left to the final syncfs, which reports any write that failed.

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

func newWindows(fd int, off int64) *windows { return &windows{fd: fd, start: off, next: off} }

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

// syncTree flushes the file system the restore wrote to.
func syncTree(t *tree) error {
	if err := unix.Syncfs(t.fd); err != nil {
		return fmt.Errorf("flush the restored data to disk (syncfs %s): %w", t.path, err)
	}
	return nil
}
