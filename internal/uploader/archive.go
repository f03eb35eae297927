package uploader

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferry-backup/ferry/api/shared"
)

// ArchiveOptions tune RestoreArchive.
type ArchiveOptions struct {
	// KeepExisting refuses to replace files and symlinks already in the target (see
	// RestoreOptions).
	KeepExisting bool
	// WriteSparseFiles writes runs of zeros as holes.
	WriteSparseFiles bool
	// Header, when set, sees each header before it is applied and may correct it (its type, mode,
	// owner, time) from a better source than the archive. A non-empty skip leaves the entry out,
	// reported as not restored for that reason (e.g. "socket"); an error ends the restore.
	Header func(*tar.Header) (skip string, err error)
	// TotalBytes and TotalFiles are the archive's content size and file count, when known.
	TotalBytes, TotalFiles int64
	// Progress is called at most every ProgressInterval and once at the end.
	Progress         func(Progress)
	ProgressInterval time.Duration
}

// ArchiveStats describe a finished archive restore.
type ArchiveStats struct {
	RestoreStats
	// NotRestored counts the entries left out: devices, FIFOs, sockets and hard links, which a
	// node-agent does not create in a tenant's volume.
	NotRestored Found
}

// RestoreArchive writes the tar stream r into dir, creating dir if needed: regular files,
// directories and symlinks (made as links, never followed), with mode, modification time and,
// when running as root, owner. Every entry is written beneath an open handle of dir, the way
// Restore writes a snapshot (beneath.go, treeOutput): a name that is absolute, holds "..", or
// would pass through a symlink or another file system is refused with ErrOutsideTarget, and
// nothing existing is opened for writing. Directories get their attributes once the stream has
// ended, so that writing their entries does not move their times. As with Restore, the data is
// on disk when RestoreArchive returns without error (writeback.go).
func RestoreArchive(ctx context.Context, r io.Reader, dir string, opts ArchiveOptions) (ArchiveStats, error) {
	start := time.Now()
	target, err := prepareTarget(dir)
	if err != nil {
		return ArchiveStats{}, err
	}
	t, err := openTree(target)
	if err != nil {
		return ArchiveStats{}, fmt.Errorf("restore into %s: %w", target, err)
	}
	defer t.Close()
	x := &extraction{
		out:  &treeOutput{t: t, overwrite: !opts.KeepExisting, direct: !opts.KeepExisting, owners: os.Geteuid() == 0, sparse: opts.WriteSparseFiles},
		opts: opts, made: map[string]bool{"": true},
		rpt: newReporter(opts.Progress, opts.ProgressInterval, shared.ProgressStageRestoring),
	}
	x.rpt.totalBytes.Store(opts.TotalBytes)
	x.rpt.totalFiles.Store(opts.TotalFiles)
	x.rpt.run()
	x.out.flush = startFlusher(t)
	err = x.run(ctx, tar.NewReader(r))
	if err == nil {
		err = x.finishDirectories()
	}
	if ctx.Err() != nil {
		err = fmt.Errorf("%w: %w", ErrCanceled, context.Cause(ctx))
	}
	if err == nil {
		err = finishFlushing(x.out.flush, t) // Completed means on disk (writeback.go)
	} else {
		_ = x.out.flush.stop()
	}
	if err == nil {
		x.rpt.setStage(shared.ProgressStageDone)
	}
	x.rpt.finish(err == nil)
	if err != nil {
		return ArchiveStats{}, fmt.Errorf("restore archive into %s: %w", target, err)
	}
	x.stats.Duration = time.Since(start)
	return x.stats, nil
}

// extraction is one RestoreArchive.
type extraction struct {
	out  *treeOutput
	opts ArchiveOptions
	rpt  *reporter
	// made holds the directories known to exist beneath the root ("" is the root).
	made map[string]bool
	// dirs are the directories of the archive, in order, with their attributes.
	dirs  []archiveDir
	stats ArchiveStats
}

type archiveDir struct {
	rel   string
	attrs attributes
}

func (x *extraction) run(ctx context.Context, tr *tar.Reader) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read the archive: %w", err)
		}
		skip := ""
		if x.opts.Header != nil {
			if skip, err = x.opts.Header(h); err != nil {
				return err
			}
		}
		if skip != "" {
			x.stats.NotRestored.add(strings.TrimSuffix(h.Name, "/") + " (" + skip + ")")
			continue
		}
		if err := x.entry(ctx, tr, h); err != nil {
			return err
		}
	}
}

// entryName is the entry's path relative to the root: "" for the root itself.
func entryName(h *tar.Header) (string, error) {
	name := strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/")
	if name == "" || name == "." {
		return "", nil
	}
	if !localPath(name) {
		return "", fmt.Errorf("%w: archive entry %q", ErrOutsideTarget, h.Name)
	}
	return name, nil
}

func (x *extraction) entry(ctx context.Context, tr *tar.Reader, h *tar.Header) error {
	rel, err := entryName(h)
	if err != nil {
		return err
	}
	attrs := attributes{uid: h.Uid, gid: h.Gid, mode: uint32(h.Mode) & 0o7777, mtime: h.ModTime}
	if rel == "" {
		if h.Typeflag != tar.TypeDir {
			return fmt.Errorf("archive entry %q names the volume's root but is not a directory", h.Name)
		}
		x.dirs = append(x.dirs, archiveDir{rel: "", attrs: attrs})
		return nil
	}
	switch h.Typeflag {
	case tar.TypeDir, tar.TypeReg, tar.TypeRegA, tar.TypeSymlink:
	default:
		x.stats.NotRestored.add(rel + " (" + typeName(h.Typeflag) + ")")
		return nil
	}
	if err := x.parents(ctx, rel); err != nil {
		return err
	}
	switch h.Typeflag {
	case tar.TypeDir:
		if err := x.mkdir(ctx, rel); err != nil {
			return err
		}
		x.dirs = append(x.dirs, archiveDir{rel: rel, attrs: attrs})
		x.stats.Dirs++
	case tar.TypeSymlink:
		if err := x.out.symlink(rel, h.Linkname, attrs); err != nil {
			return err
		}
		x.stats.Symlinks++
	default:
		err := x.out.writeNew(rel, 0o600, func(out *os.File) error {
			var written int64
			if err := x.out.copyContent(out, tr, func(n int64) { written += n; x.rpt.bytesDone.Add(n) }); err != nil {
				return err
			}
			if written != h.Size {
				return fmt.Errorf("the archive ends inside it (%d of %d bytes): %w", written, h.Size, io.ErrUnexpectedEOF)
			}
			return x.out.apply(int(out.Fd()), rel, attrs)
		})
		if err != nil {
			return err
		}
		x.stats.Files++
		x.stats.Bytes += h.Size
		x.rpt.filesDone.Add(1)
		x.out.flush.wrote(h.Size)
	}
	return nil
}

// parents makes the directories above rel that the archive has not made (an archive need not
// list them), mode 0700 until the archive says otherwise.
func (x *extraction) parents(ctx context.Context, rel string) error {
	parent := path.Dir(rel)
	if parent == "." || x.made[parent] {
		return nil
	}
	if err := x.parents(ctx, parent); err != nil {
		return err
	}
	return x.mkdir(ctx, parent)
}

// mkdir makes rel, or merges into the directory there (see treeOutput.BeginDirectory).
func (x *extraction) mkdir(ctx context.Context, rel string) error {
	if err := x.out.BeginDirectory(ctx, rel, nil); err != nil {
		return err
	}
	x.made[rel] = true
	return nil
}

// finishDirectories sets the directories' attributes, deepest last-listed first, once no entry
// will be written into them any more.
func (x *extraction) finishDirectories() error {
	for i := len(x.dirs) - 1; i >= 0; i-- {
		d := x.dirs[i]
		fd, err := x.out.t.open(d.rel, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			return err
		}
		err = x.out.apply(fd, d.rel, d.attrs)
		unix.Close(fd)
		if err != nil {
			return err
		}
	}
	return nil
}

// typeName names a tar entry type for messages.
func typeName(flag byte) string {
	switch flag {
	case tar.TypeLink:
		return "hard link"
	case tar.TypeChar:
		return "character device"
	case tar.TypeBlock:
		return "block device"
	case tar.TypeFifo:
		return "FIFO"
	}
	return fmt.Sprintf("entry of type %q", flag)
}
