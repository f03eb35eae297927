package uploader

import (
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"time"
	"unicode/utf8"

	"github.com/kopia/kopia/fs"
	"golang.org/x/sys/unix"
)

// The backup side of the tree (see beneath.go): Kopia's fs interfaces over a volume, each entry
// remembering what was listed and reopened beneath the root by its relative path. Only regular
// files are ever opened for reading, and only when they are still the file that was listed.
// FIFOs, sockets and device nodes are reported as errors, never opened: the backup ends with
// them counted and named.

// sourceRoot returns the volume root as a Kopia directory.
func sourceRoot(t *tree) (fs.Directory, error) {
	var st unix.Stat_t
	if err := unix.Fstat(t.fd, &st); err != nil {
		return nil, &os.PathError{Op: "stat", Path: t.path, Err: err}
	}
	return &sourceDir{sourceEntry{t: t, name: path.Base(t.path), st: st}}, nil
}

// sourceEntry is one listed entry; rel is its slash path from the root ("" for the root).
type sourceEntry struct {
	t    *tree
	rel  string
	name string
	st   unix.Stat_t
}

func (e *sourceEntry) Name() string       { return e.name }
func (e *sourceEntry) Size() int64        { return e.st.Size }
func (e *sourceEntry) Mode() os.FileMode  { return fileMode(e.st.Mode) }
func (e *sourceEntry) ModTime() time.Time { return time.Unix(e.st.Mtim.Unix()) }
func (e *sourceEntry) IsDir() bool        { return e.st.Mode&unix.S_IFMT == unix.S_IFDIR }
func (e *sourceEntry) Sys() any           { return nil }
func (e *sourceEntry) Owner() fs.OwnerInfo {
	return fs.OwnerInfo{UserID: e.st.Uid, GroupID: e.st.Gid}
}
func (e *sourceEntry) Device() fs.DeviceInfo {
	return fs.DeviceInfo{Dev: e.st.Dev, Rdev: e.st.Rdev}
}

// LocalFilesystemPath is empty: nothing in Kopia may reach the entry by its path.
func (e *sourceEntry) LocalFilesystemPath() string { return "" }
func (e *sourceEntry) Close()                      {}

// changed is the error for an entry that is no longer what was listed.
func (e *sourceEntry) changed(now *unix.Stat_t) error {
	return fmt.Errorf("%s: the %s listed was replaced by a %s before it was read; not backed up", e.rel, kindOf(e.st.Mode), kindOf(now.Mode))
}

// child makes the entry for a name listed in this directory.
func (e *sourceEntry) child(name string, st unix.Stat_t) fs.Entry {
	c := sourceEntry{t: e.t, rel: path.Join(e.rel, name), name: name, st: st}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return &sourceDir{c}
	case unix.S_IFREG:
		return &sourceFile{c}
	case unix.S_IFLNK:
		return &sourceSymlink{c}
	}
	// Kopia puts the entry's path before the message.
	return &sourceError{c, fmt.Errorf("is a %s: not backed up (only files, directories and symlinks are)", kindOf(st.Mode))}
}

type sourceDir struct{ sourceEntry }

var _ fs.Directory = (*sourceDir)(nil)

// reopen opens the entry beneath the root with flags, only if it is still the object that was
// listed (device, inode, type).
func (e *sourceEntry) reopen(flags int) (*os.File, error) {
	fd, err := e.t.open(e.rel, flags, 0)
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, err
	}
	if !sameFile(&st, &e.st) {
		unix.Close(fd)
		return nil, e.changed(&st)
	}
	return os.NewFile(uintptr(fd), e.rel), nil
}

// openDir opens the directory and checks it is the one listed.
func (d *sourceDir) openDir() (*os.File, error) { return d.reopen(unix.O_RDONLY | unix.O_DIRECTORY) }

func (d *sourceDir) Child(_ context.Context, name string) (fs.Entry, error) {
	f, err := d.openDir()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := lstatAt(int(f.Fd()), name)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, fs.ErrEntryNotFound
		}
		return nil, &os.PathError{Op: "stat", Path: path.Join(d.rel, name), Err: err}
	}
	return d.child(name, st), nil
}

func (d *sourceDir) Iterate(context.Context) (fs.DirectoryIterator, error) {
	f, err := d.openDir()
	if err != nil {
		return nil, err
	}
	it := &sourceIterator{d: d, f: f}
	if m := d.t.meta; m != nil && !m.isCounted(idOf(&d.st)) {
		it.count = true
		it.found.noteXattrs(shownPath(d.rel), xattrsOf(int(f.Fd())))
	}
	return it, nil
}

func (d *sourceDir) SupportsMultipleIterations() bool { return true }

// sourceIterator lists a directory a batch of names at a time, each stat'ed relative to the
// open directory without following symlinks.
type sourceIterator struct {
	d       *sourceDir
	f       *os.File
	pending []string
	done    bool
	// count is set when this listing counts what the snapshot does not keep of the entries
	// (metadata.go): no listing of the directory had counted them when it began.
	count bool
	found dirFindings
	// stored are the names the invalid UTF-8 names listed so far are stored under.
	stored map[string]bool
}

const listBatch = 256

func (it *sourceIterator) Next(context.Context) (fs.Entry, error) {
	for {
		if len(it.pending) == 0 {
			if it.done {
				return nil, nil
			}
			names, err := it.f.Readdirnames(listBatch)
			if err == io.EOF || (err == nil && len(names) == 0) {
				it.done = true
				if it.count {
					it.d.t.meta.commit(idOf(&it.d.st), &it.found)
				}
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("list %s: %w", it.d.rel, err)
			}
			it.pending = names
		}
		name := it.pending[0]
		it.pending = it.pending[1:]
		st, err := lstatAt(int(it.f.Fd()), name)
		if os.IsNotExist(err) {
			continue // deleted since it was listed
		}
		if err != nil {
			return &sourceError{sourceEntry{t: it.d.t, rel: path.Join(it.d.rel, name), name: name},
				&os.PathError{Op: "stat", Path: path.Join(it.d.rel, name), Err: err}}, nil
		}
		return it.entry(name, st), nil
	}
}

func (it *sourceIterator) Close() { it.f.Close() }

// entry makes the entry for a listed name and notes what the snapshot will not keep of it.
func (it *sourceIterator) entry(name string, st unix.Stat_t) fs.Entry {
	rel := path.Join(it.d.rel, name)
	if !utf8.ValidString(name) {
		stored := storedName(name)
		if it.taken(stored) {
			return &sourceError{sourceEntry{t: it.d.t, rel: rel, name: name, st: st}, fmt.Errorf(
				"the name is not valid UTF-8 and would be stored as %q, the name of another entry of its directory: not backed up", stored)}
		}
		if it.count {
			it.found.nonUTF8 = append(it.found.nonUTF8, rel)
		}
	}
	if it.count {
		if st.Mode&unix.S_IFMT != unix.S_IFDIR && st.Nlink > 1 {
			it.found.links = append(it.found.links, linkFinding{idOf(&st), rel})
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR { // a directory's are listed with its own listing
			it.noteXattrs(name, &st, rel)
		}
	}
	return it.d.child(name, st)
}

// taken reports whether stored is the name of an entry already in the directory, or already
// taken by an invalid name listed before; else it takes it.
func (it *sourceIterator) taken(stored string) bool {
	if it.stored[stored] {
		return true
	}
	if _, err := lstatAt(int(it.f.Fd()), stored); err == nil {
		return true
	}
	if it.stored == nil {
		it.stored = map[string]bool{}
	}
	it.stored[stored] = true
	return false
}

// noteXattrs lists the extended attributes of the entry name of the directory. Without
// listxattrat, a regular file is opened to list them, without following a symlink or blocking
// on a FIFO swapped in, and only if it is still the file that was listed; one that cannot be
// opened is reported by the read, if at all.
func (it *sourceIterator) noteXattrs(name string, listed *unix.Stat_t, rel string) {
	if names, ok := xattrsAt(int(it.f.Fd()), name); ok {
		it.found.noteXattrs(rel, names)
		return
	}
	if listed.Mode&unix.S_IFMT != unix.S_IFREG {
		return
	}
	fd, err := unix.Openat(int(it.f.Fd()), name, unix.O_RDONLY|unix.O_NOCTTY|safeFlags, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || !sameFile(&st, listed) {
		return
	}
	it.found.noteXattrs(rel, xattrsOf(fd))
}

// shownPath is rel as messages show it: the volume's root is ".".
func shownPath(rel string) string {
	if rel == "" {
		return "."
	}
	return rel
}

type sourceFile struct{ sourceEntry }

var _ fs.File = (*sourceFile)(nil)

// Open opens the file for reading, only if it is still the regular file that was listed.
func (f *sourceFile) Open(context.Context) (fs.Reader, error) {
	file, err := f.reopen(unix.O_RDONLY)
	if err != nil {
		return nil, err
	}
	return &sourceReader{File: file, f: f}, nil
}

type sourceReader struct {
	*os.File
	f *sourceFile
}

func (r *sourceReader) Entry() (fs.Entry, error) { return r.f, nil }

type sourceSymlink struct{ sourceEntry }

var _ fs.Symlink = (*sourceSymlink)(nil)

// Readlink reads the link's target relative to its open parent, after checking it is still the
// symlink that was listed.
func (l *sourceSymlink) Readlink(context.Context) (string, error) {
	dir, name, err := l.t.parent(l.rel)
	if err != nil {
		return "", err
	}
	defer unix.Close(dir)
	st, err := lstatAt(dir, name)
	if err != nil {
		return "", &os.PathError{Op: "stat", Path: l.rel, Err: err}
	}
	if !sameFile(&st, &l.st) {
		return "", l.changed(&st)
	}
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(dir, name, buf)
	if err != nil {
		return "", &os.PathError{Op: "readlink", Path: l.rel, Err: err}
	}
	return string(buf[:n]), nil
}

// Resolve is refused: symlinks in a volume are stored, never followed.
func (l *sourceSymlink) Resolve(context.Context) (fs.Entry, error) {
	return nil, fmt.Errorf("%s: symlinks in a volume are not followed", l.rel)
}

// sourceError is an entry that cannot be backed up, with the reason.
type sourceError struct {
	sourceEntry
	err error
}

var _ fs.ErrorEntry = (*sourceError)(nil)

func (e *sourceError) ErrorInfo() error { return e.err }
