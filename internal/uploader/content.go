package uploader

// How a restored file's content is written: pooled buffers, the bound on readers of large
// files, large files in segments written by several readers, sparse chunks as holes, and
// writeback as it goes (writeback.go). The file itself is created by treeOutput (output.go).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"

	"github.com/kopia/kopia/fs"
	"github.com/kopia/kopia/snapshot/restore"
)

// copyBuffer is the size of the chunks a file is written in.
const copyBuffer = 1 << 20

// copyBuffers are reused across files: a restore of many small files would otherwise allocate
// one buffer per file.
var copyBuffers = sync.Pool{New: func() any { b := make([]byte, copyBuffer); return &b }}

// A reader of a file's object holds up to about four buffers of its chunk's size (Kopia copies
// each chunk from the pack, decrypted, and into the reader), up to 8 MiB each, and the collector
// lets the heap grow to twice what is live: with 16 CPUs, 16 workers and 16 helpers reading
// large files took 1.3–1.5 GiB (docs/performance.md). So a restore has at most maxLargeReaders
// readers of files of largeFileSize bytes or more at once, helpers included; smaller files, whose
// buffers are their size, need no token.
const (
	maxLargeReaders = 8
	largeFileSize   = 4 << 20
)

// largeReaderStarted, when set (tests), is told how many readers' tokens are taken each time
// one is.
var largeReaderStarted func(taken int)

func (o *treeOutput) readerStarted() {
	if largeReaderStarted != nil {
		largeReaderStarted(len(o.readers))
	}
}

// Large files are written by several workers at once. From splitSize bytes on, a file is cut
// into segments of segmentSize bytes: the worker that writes the file takes them in order, and
// helpers — taken only while a reader's token is free, and only with at least
// minProcsForSegments CPUs — take the next ones. Each has its own reader of the file's object,
// positioned with Seek, and writes with pwrite to the same open handle of the new file, so
// nothing is opened that the single-writer path does not open.
const (
	segmentSize = 16 << 20
	splitSize   = 2 * segmentSize
)

// writeContent copies the file's content; with sparse set, all-zero chunks become holes.
func (o *treeOutput) writeContent(ctx context.Context, out *os.File, f fs.File, progress restore.FileWriteProgress) error {
	if o.readers != nil && f.Size() >= largeFileSize {
		select {
		case o.readers <- struct{}{}:
			o.readerStarted()
			defer func() { <-o.readers }()
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		if o.segments && f.Size() >= splitSize {
			return o.writeSegments(ctx, out, f, progress)
		}
	}
	in, err := f.Open(ctx)
	if err != nil {
		return err
	}
	defer in.Close()
	return o.copyContent(out, in, progress)
}

// copyContent copies in to out from its start, calling progress (when set) after each chunk.
func (o *treeOutput) copyContent(out *os.File, in io.Reader, progress func(int64)) error {
	written, err := o.copyRange(in, out, 0, -1, progress)
	if err != nil {
		return err
	}
	if o.sparse {
		return out.Truncate(written) // a trailing hole
	}
	return nil
}

// writeSegments writes a large file with the help of free helpers (see segmentSize).
func (o *treeOutput) writeSegments(ctx context.Context, out *os.File, f fs.File, progress restore.FileWriteProgress) error {
	size := f.Size()
	segments := (size + segmentSize - 1) / segmentSize
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		next  atomic.Int64
		total atomic.Int64 // the file's length, known once the last segment is written
		mu    sync.Mutex   // Kopia's progress callback is not safe for concurrent use
	)
	report := func(n int64) {
		if progress != nil {
			mu.Lock()
			progress(n)
			mu.Unlock()
		}
	}
	work := func() error {
		in, err := f.Open(ctx)
		if err != nil {
			return err
		}
		defer in.Close()
		for ctx.Err() == nil {
			i := next.Add(1) - 1
			if i >= segments {
				return nil
			}
			off, n := i*segmentSize, min(segmentSize, size-i*segmentSize)
			limit := n
			if i == segments-1 {
				limit = -1 // to the end, as the single-writer path does
			}
			if _, err := in.Seek(off, io.SeekStart); err != nil {
				return fmt.Errorf("seek to %d: %w", off, err)
			}
			got, err := o.copyRange(in, out, off, limit, report)
			if err != nil {
				return err
			}
			if got < n {
				return fmt.Errorf("short read: %d of %d bytes at offset %d", got, n, off)
			}
			if i == segments-1 {
				total.Store(off + got)
			}
		}
		return context.Cause(ctx)
	}
	var wg sync.WaitGroup
start:
	for range segments - 1 {
		select {
		case o.readers <- struct{}{}:
			o.readerStarted()
			wg.Go(func() {
				defer func() { <-o.readers }()
				if err := work(); err != nil {
					cancel(err)
				}
			})
		default:
			break start // no token free: the others are busy with large files of their own
		}
	}
	if err := work(); err != nil {
		cancel(err)
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	if o.sparse {
		return out.Truncate(total.Load()) // a trailing hole
	}
	return nil
}

// copyRange copies n bytes (all that is left, for n < 0) from in to out at offset off, in
// chunks of copyBuffer, writing them back to disk as it goes (writeback.go); it returns the
// number of bytes copied.
func (o *treeOutput) copyRange(in io.Reader, out *os.File, off, n int64, progress restore.FileWriteProgress) (int64, error) {
	if n >= 0 {
		in = io.LimitReader(in, n)
	}
	bufp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bufp)
	buf := *bufp
	var written int64
	w := newWindows(int(out.Fd()), off)
	for {
		k, rerr := io.ReadFull(in, buf)
		if k > 0 {
			if err := o.writeChunk(out, buf[:k], off+written); err != nil {
				return written, err
			}
			written += int64(k)
			w.wrote(off + written)
			if progress != nil {
				progress(int64(k))
			}
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			return written, nil
		}
		if rerr != nil {
			return written, rerr
		}
	}
}

// sparseBlock is the granularity of holes.
const sparseBlock = 4096

// writeChunk writes chunk at offset; with sparse set, its all-zero blocks are left as holes.
func (o *treeOutput) writeChunk(out *os.File, chunk []byte, offset int64) error {
	if !o.sparse {
		_, err := out.WriteAt(chunk, offset)
		return err
	}
	for start := 0; start < len(chunk); {
		end := min(start+sparseBlock, len(chunk))
		if allZero(chunk[start:end]) {
			start = end
			continue
		}
		for end < len(chunk) && !allZero(chunk[end:min(end+sparseBlock, len(chunk))]) {
			end = min(end+sparseBlock, len(chunk))
		}
		if _, err := out.WriteAt(chunk[start:end], offset+int64(start)); err != nil {
			return err
		}
		start = end
	}
	return nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
