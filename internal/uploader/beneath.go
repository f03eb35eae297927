package uploader

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// The node-agent runs as root over every pod's volumes, and a tenant controls the contents of
// its own volume while Ferry reads or writes it: it can swap any file or directory for a
// symlink, a FIFO or another file between two system calls. So Ferry never resolves a path
// inside a volume through the path's text. A tree is one open handle of the volume's root
// directory; every other file is reached from it with openat2(RESOLVE_BENEATH |
// RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV), which makes the kernel refuse
// any symlink, ".." step or mount crossing on the way, or (kernels before 5.6) one component at
// a time with O_NOFOLLOW. Every open adds O_NOFOLLOW and O_NONBLOCK (a FIFO swapped in never
// blocks the open), and the object opened is checked against what was listed (type, device,
// inode). Attributes are set on open handles or with *at calls that do not follow symlinks.

// ErrOutsideTarget is returned when an entry's path would leave the volume or pass through a
// symlink or another file system.
var ErrOutsideTarget = errors.New("entry would be reached outside the volume")

// tree is an open volume root.
type tree struct {
	fd   int
	path string // for messages only, never opened again
	dev  uint64
	// meta collects what a backup's snapshot does not keep (metadata.go); nil for restores.
	meta *metadataReport
}

// openTree opens dir, which must be a directory and not a symlink.
func openTree(dir string) (*tree, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "stat", Path: dir, Err: err}
	}
	return &tree{fd: fd, path: dir, dev: st.Dev}, nil
}

func (t *tree) Close() error { return unix.Close(t.fd) }

// noOpenat2 is set once the kernel said it has no openat2.
var noOpenat2 atomic.Bool

const safeFlags = unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_CLOEXEC

// open opens rel ("" is the root; slash-separated, relative) beneath the root with flags plus
// O_NOFOLLOW|O_NONBLOCK|O_CLOEXEC; mode is used with O_CREAT.
func (t *tree) open(rel string, flags int, mode uint32) (int, error) {
	if rel == "" || rel == "." {
		return t.retry(func() (int, error) { return unix.Openat(t.fd, ".", flags|safeFlags, mode) })
	}
	if !localPath(rel) {
		return -1, fmt.Errorf("%w: %q", ErrOutsideTarget, rel)
	}
	if !noOpenat2.Load() {
		how := &unix.OpenHow{Flags: uint64(flags | safeFlags), Mode: uint64(mode),
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV}
		fd, err := t.retry(func() (int, error) { return unix.Openat2(t.fd, rel, how) })
		if !errors.Is(err, unix.ENOSYS) {
			return fd, t.pathError("open", rel, err)
		}
		noOpenat2.Store(true)
	}
	return t.walk(rel, flags, mode)
}

// walk is open without openat2: one component at a time, each directory opened with
// O_NOFOLLOW and checked to be on the root's file system.
func (t *tree) walk(rel string, flags int, mode uint32) (int, error) {
	parts := strings.Split(rel, "/")
	dir := t.fd
	defer func() {
		if dir != t.fd {
			unix.Close(dir)
		}
	}()
	for _, part := range parts[:len(parts)-1] {
		fd, err := unix.Openat(dir, part, unix.O_RDONLY|unix.O_DIRECTORY|safeFlags, 0)
		if err != nil {
			return -1, t.pathError("open", rel, err)
		}
		if dir != t.fd {
			unix.Close(dir)
		}
		dir = fd
		if err := t.sameDevice(fd, rel); err != nil {
			return -1, err
		}
	}
	fd, err := unix.Openat(dir, parts[len(parts)-1], flags|safeFlags, mode)
	if err != nil {
		return -1, t.pathError("open", rel, err)
	}
	if err := t.sameDevice(fd, rel); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

func (t *tree) sameDevice(fd int, rel string) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return t.pathError("stat", rel, err)
	}
	if st.Dev != t.dev {
		return fmt.Errorf("%w: %q is on another file system", ErrOutsideTarget, rel)
	}
	return nil
}

// retry repeats a call interrupted by a signal, or refused by openat2 because a rename raced
// the lookup (EAGAIN), a few times.
func (t *tree) retry(call func() (int, error)) (int, error) {
	for i := 0; ; i++ {
		fd, err := call()
		if (errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN)) && i < 8 {
			continue
		}
		return fd, err
	}
}

// pathError names the entry; ELOOP and EXDEV, which the kernel returns for a symlink or a
// mount on the way, say so as ErrOutsideTarget.
func (t *tree) pathError(op, rel string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EXDEV) {
		return fmt.Errorf("%w: %q: a symlink or another file system is on the way (%v)", ErrOutsideTarget, rel, err)
	}
	return &os.PathError{Op: op, Path: rel, Err: err}
}

// parent opens the directory holding rel and returns it with rel's last component.
func (t *tree) parent(rel string) (int, string, error) {
	dir, name := path.Split(rel)
	fd, err := t.open(strings.TrimSuffix(dir, "/"), unix.O_RDONLY|unix.O_DIRECTORY, 0)
	return fd, name, err
}

// localPath: relative, clean, and without ".." components.
func localPath(rel string) bool {
	return rel != "" && !strings.HasPrefix(rel, "/") && path.Clean(rel) == rel && rel != ".." && !strings.HasPrefix(rel, "../")
}

// lstatAt returns what name in the open directory dir is, without following a symlink.
func lstatAt(dir int, name string) (unix.Stat_t, error) {
	var st unix.Stat_t
	err := unix.Fstatat(dir, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	return st, err
}

// sameFile: a and b are the same object (device, inode and type).
func sameFile(a, b *unix.Stat_t) bool {
	return a.Dev == b.Dev && a.Ino == b.Ino && a.Mode&unix.S_IFMT == b.Mode&unix.S_IFMT
}

// kindOf names a file type for messages.
func kindOf(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return "file"
	case unix.S_IFDIR:
		return "directory"
	case unix.S_IFLNK:
		return "symlink"
	case unix.S_IFIFO:
		return "FIFO"
	case unix.S_IFSOCK:
		return "socket"
	case unix.S_IFCHR:
		return "character device"
	case unix.S_IFBLK:
		return "block device"
	}
	return "file of unknown type"
}

// fileMode converts a stat mode into Go's.
func fileMode(m uint32) os.FileMode {
	mode := os.FileMode(m & 0o777)
	if m&unix.S_ISUID != 0 {
		mode |= os.ModeSetuid
	}
	if m&unix.S_ISGID != 0 {
		mode |= os.ModeSetgid
	}
	if m&unix.S_ISVTX != 0 {
		mode |= os.ModeSticky
	}
	switch m & unix.S_IFMT {
	case unix.S_IFDIR:
		mode |= os.ModeDir
	case unix.S_IFLNK:
		mode |= os.ModeSymlink
	case unix.S_IFIFO:
		mode |= os.ModeNamedPipe
	case unix.S_IFSOCK:
		mode |= os.ModeSocket
	case unix.S_IFCHR:
		mode |= os.ModeDevice | os.ModeCharDevice
	case unix.S_IFBLK:
		mode |= os.ModeDevice
	}
	return mode
}

// unixMode converts Go's permission bits (with setuid, setgid, sticky) into a stat mode.
func unixMode(m os.FileMode) uint32 {
	mode := uint32(m.Perm())
	if m&os.ModeSetuid != 0 {
		mode |= unix.S_ISUID
	}
	if m&os.ModeSetgid != 0 {
		mode |= unix.S_ISGID
	}
	if m&os.ModeSticky != 0 {
		mode |= unix.S_ISVTX
	}
	return mode
}
