package uploader

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
	"unsafe"

	"github.com/kopia/kopia/fs"
	"github.com/kopia/kopia/snapshot/restore"
	"golang.org/x/sys/unix"
)

// treeOutput is the restore side of the tree (see beneath.go): what restoreWalk (walk.go) and
// RestoreArchive write beneath the volume root goes through it. Directories are made with mkdirat
// in their open parent. A file is created with O_CREAT|O_EXCL, so nothing existing is ever
// opened for writing: under its name when that is free (direct), else under a new temporary
// name renamed over its name once written — rename replaces a symlink planted there instead of
// following it. It gets its owner, mode and times on the open handle.
// Symlinks are made the same way with symlinkat. What is in the way is replaced when
// overwriting, else refused.
type treeOutput struct {
	t *tree
	// overwrite replaces existing files and symlinks (directories are always merged into).
	overwrite bool
	// direct writes a file whose name is free under that name, with O_CREAT|O_EXCL (which opens
	// nothing that exists, a symlink included), instead of under a temporary name renamed into
	// place: one directory update less per file, and most restores go into empty volumes. A
	// restore that fails or crashes can then leave a partly written file under its name, which
	// the next overwriting restore replaces; so only with overwrite.
	direct bool
	// owners sets uid and gid (only root may).
	owners bool
	sparse bool
	// readers are tokens for the readers of large files (see maxLargeReaders); nil: unbounded.
	readers chan struct{}
	// segments lets free readers help write a large file (see segmentSize); needs readers.
	segments bool
	// flush writes what was restored to disk as the restore goes (writeback.go); nil: never.
	flush *flusher
}

// tempPrefix starts the names files are written under before they are renamed into place.
const tempPrefix = ".ferry-restore-"

func (o *treeOutput) BeginDirectory(_ context.Context, rel string, _ fs.Directory) error {
	if rel == "" {
		return nil
	}
	dir, name, err := o.t.parent(rel)
	if err != nil {
		return err
	}
	defer unix.Close(dir)
	err = unix.Mkdirat(dir, name, 0o700)
	if !errors.Is(err, unix.EEXIST) {
		return o.t.pathError("mkdir", rel, err)
	}
	st, err := lstatAt(dir, name)
	if err != nil {
		return o.t.pathError("stat", rel, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return nil // merged into
	}
	if !o.overwrite {
		return o.inTheWay(rel, st.Mode, "a directory")
	}
	if err := unix.Unlinkat(dir, name, 0); err != nil {
		return o.t.pathError("remove", rel, err)
	}
	return o.t.pathError("mkdir", rel, unix.Mkdirat(dir, name, 0o700))
}

// FinishDirectory sets the directory's owner, mode and time on its open handle.
func (o *treeOutput) FinishDirectory(_ context.Context, rel string, e fs.Directory) error {
	fd, err := o.t.open(rel, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return o.setAttributes(fd, rel, e)
}

// attributes are what a restore sets on an entry besides its content.
type attributes struct {
	uid, gid int
	// mode holds the permission bits with setuid, setgid and sticky, as stat has them.
	mode  uint32
	mtime time.Time
}

func attributesOf(e fs.Entry) attributes {
	return attributes{uid: int(e.Owner().UserID), gid: int(e.Owner().GroupID), mode: unixMode(e.Mode()), mtime: e.ModTime()}
}

// setAttributes sets owner (as root), then mode (chown clears setuid and setgid), then times.
func (o *treeOutput) setAttributes(fd int, rel string, e fs.Entry) error {
	return o.apply(fd, rel, attributesOf(e))
}

// apply sets a's owner (as root), then its mode (chown clears setuid and setgid), then its time
// on the open file fd.
func (o *treeOutput) apply(fd int, rel string, a attributes) error {
	if o.owners {
		if err := unix.Fchown(fd, a.uid, a.gid); err != nil {
			return o.t.pathError("chown", rel, err)
		}
	}
	if err := unix.Fchmod(fd, a.mode); err != nil {
		return o.t.pathError("chmod", rel, err)
	}
	return o.t.pathError("set times of", rel, futimens(fd, a.mtime))
}

// futimens sets the access and modification times of an open file.
func futimens(fd int, t time.Time) error {
	ts := []unix.Timespec{unix.NsecToTimespec(t.UnixNano()), unix.NsecToTimespec(t.UnixNano())}
	_, _, errno := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// place checks what is at name in dir before an entry is renamed over it.
func (o *treeOutput) place(dir int, name, rel string) error {
	st, err := lstatAt(dir, name)
	switch {
	case errors.Is(err, unix.ENOENT):
		return nil
	case err != nil:
		return o.t.pathError("stat", rel, err)
	case st.Mode&unix.S_IFMT == unix.S_IFDIR:
		return fmt.Errorf("%s exists and is a directory", rel)
	case !o.overwrite:
		return o.inTheWay(rel, st.Mode, "restored")
	}
	return nil
}

// inTheWay is the error for an existing entry that is kept (KeepExisting); a symlink is
// reported as ErrOutsideTarget, since writing through it would leave the volume.
func (o *treeOutput) inTheWay(rel string, mode uint32, want string) error {
	if mode&unix.S_IFMT == unix.S_IFLNK {
		return fmt.Errorf("%w: %s is an existing symlink and existing entries are kept", ErrOutsideTarget, rel)
	}
	return fmt.Errorf("%s exists (a %s) and existing entries are kept; not %s", rel, kindOf(mode), want)
}

func tempName() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return tempPrefix + hex.EncodeToString(b)
}

func (o *treeOutput) WriteFile(ctx context.Context, rel string, f fs.File, progress restore.FileWriteProgress) error {
	err := o.writeNew(rel, 0o600, func(out *os.File) error {
		if err := o.writeContent(ctx, out, f, progress); err != nil {
			return err
		}
		return o.setAttributes(int(out.Fd()), rel, f)
	})
	if err == nil && o.flush != nil {
		o.flush.wrote(f.Size())
	}
	return err
}

// writeNew writes a new file under a temporary name in rel's directory (O_CREAT|O_EXCL: nothing
// existing is opened), lets fill write it, and renames it over rel; on failure the temporary
// file is removed. With direct set, a file whose name is free is written under its name.
func (o *treeOutput) writeNew(rel string, mode uint32, fill func(*os.File) error) error {
	dir, name, err := o.t.parent(rel)
	if err != nil {
		return err
	}
	defer unix.Close(dir)
	if o.direct {
		fd, err := unix.Openat(dir, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|safeFlags, mode)
		if err == nil {
			return o.fillDirect(dir, name, rel, fd, fill)
		}
		if !errors.Is(err, unix.EEXIST) {
			return o.t.pathError("create", rel, err)
		}
		// Something is in the way: written aside and renamed over it, as below.
	}
	tmp := tempName()
	fd, err := unix.Openat(dir, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|safeFlags, mode)
	if err != nil {
		return o.t.pathError("create", rel, err)
	}
	out := os.NewFile(uintptr(fd), rel)
	err = fill(out)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = o.rename(dir, tmp, name, rel)
	}
	if err != nil {
		_ = unix.Unlinkat(dir, tmp, 0)
		return fmt.Errorf("write %s: %w", rel, err)
	}
	return nil
}

// fillDirect lets fill write fd, created under name in dir; if that or closing it fails, it
// removes name if it still is that file (a tenant may have renamed it away meanwhile: what took
// its place stays). A crash leaves the partly written file under its name (see direct).
func (o *treeOutput) fillDirect(dir int, name, rel string, fd int, fill func(*os.File) error) error {
	out := os.NewFile(uintptr(fd), rel)
	err := fill(out)
	var mine unix.Stat_t
	statErr := unix.Fstat(fd, &mine)
	if cerr := out.Close(); err == nil {
		err = cerr // a file system may report a failed write only when the file is closed
	}
	if err == nil {
		return nil
	}
	if statErr == nil {
		if there, serr := lstatAt(dir, name); serr == nil && sameFile(&mine, &there) {
			_ = unix.Unlinkat(dir, name, 0)
		}
	}
	return fmt.Errorf("write %s: %w", rel, err)
}

// rename moves the entry written under tmp to name: over what is there when overwriting (rename
// replaces a file or symlink without following it, and fails on a directory), else only if
// nothing is there (RENAME_NOREPLACE), so that no separate check can be raced.
func (o *treeOutput) rename(dir int, tmp, name, rel string) error {
	flags := uint(0)
	if !o.overwrite {
		flags = unix.RENAME_NOREPLACE
	}
	err := unix.Renameat2(dir, tmp, dir, name, flags)
	if errors.Is(err, unix.EINVAL) && flags != 0 { // a file system without RENAME_NOREPLACE
		if err = o.place(dir, name, rel); err != nil {
			return err
		}
		err = unix.Renameat(dir, tmp, dir, name)
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EISDIR) || errors.Is(err, unix.ENOTEMPTY):
		return fmt.Errorf("%s exists and is a directory", rel)
	case errors.Is(err, unix.EEXIST):
		st, _ := lstatAt(dir, name)
		return o.inTheWay(rel, st.Mode, "restored")
	}
	return o.t.pathError("rename into", rel, err)
}

func (o *treeOutput) CreateSymlink(ctx context.Context, rel string, l fs.Symlink) error {
	target, err := l.Readlink(ctx)
	if err != nil {
		return err
	}
	return o.symlink(rel, target, attributesOf(l))
}

// symlink makes a link to target at rel, with a's owner and time (a symlink has no mode of
// its own).
func (o *treeOutput) symlink(rel, target string, a attributes) error {
	dir, name, err := o.t.parent(rel)
	if err != nil {
		return err
	}
	defer unix.Close(dir)
	tmp := tempName()
	if err := unix.Symlinkat(target, dir, tmp); err != nil {
		return o.t.pathError("symlink", rel, err)
	}
	ts := []unix.Timespec{unix.NsecToTimespec(a.mtime.UnixNano()), unix.NsecToTimespec(a.mtime.UnixNano())}
	err = unix.UtimesNanoAt(dir, tmp, ts, unix.AT_SYMLINK_NOFOLLOW)
	if err == nil && o.owners {
		err = unix.Fchownat(dir, tmp, a.uid, a.gid, unix.AT_SYMLINK_NOFOLLOW)
	}
	if err != nil {
		_ = unix.Unlinkat(dir, tmp, 0)
		return o.t.pathError("symlink", rel, err)
	}
	if err := o.rename(dir, tmp, name, rel); err != nil {
		_ = unix.Unlinkat(dir, tmp, 0)
		return err
	}
	return nil
}

// WriteBeneath writes data to rel (slash-separated) below dir, creating its parent directories
// (mode 0755) beneath dir; it never follows a symlink, and replaces what is at rel.
func WriteBeneath(dir, rel string, data []byte) error {
	t, err := openTree(dir)
	if err != nil {
		return err
	}
	defer t.Close()
	// Not direct: the marker must appear whole or not at all (renamed into place), as Velero's
	// restore-wait container takes its presence as the restore's end.
	o := &treeOutput{t: t, overwrite: true}
	parts := strings.Split(rel, "/")
	for i := range parts[:len(parts)-1] {
		sub := strings.Join(parts[:i+1], "/")
		if err := o.BeginDirectory(context.Background(), sub, nil); err != nil {
			return err
		}
		fd, err := t.open(sub, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			return err
		}
		err = unix.Fchmod(fd, 0o755)
		unix.Close(fd)
		if err != nil {
			return err
		}
	}
	return o.writeNew(rel, 0o644, func(out *os.File) error {
		_, err := out.Write(data)
		return err
	})
}
