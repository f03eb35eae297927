package uploader

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A snapshot keeps every regular file's content, every directory and every symlink, with owner,
// mode and modification time. Some metadata it does not keep (docs/security.md); a backup counts
// the entries concerned and names the first few, so that nothing is changed silently:
//
//   - Hard links: Kopia stores no inode identity, so each name of a file with several links is
//     stored, and restored, as a separate copy of the content.
//   - Extended attributes — POSIX ACLs (system.posix_acl_*), SELinux labels (security.selinux),
//     file capabilities (security.capability), user.* attributes — are not stored. A
//     directory's are listed on the handle its listing opened (flistxattr), every other entry's
//     with listxattrat(AT_SYMLINK_NOFOLLOW) in that handle, which neither follows nor opens it.
//     Kernels before 6.13 have no listxattrat: there a regular file is opened the safe way
//     (beneath.go) and listed with flistxattr, which costs an open per file, and a symlink's own
//     attributes are not looked at.
//   - A name that is not valid UTF-8 is stored as a JSON string, with U+FFFD in place of each
//     invalid byte: the entry comes back under that name. When that name is taken in its
//     directory (by a valid name, or by another invalid one before it in the listing), a
//     restore would overwrite one entry with the other: such an entry is left out and reported
//     as not backed up instead.
//
// Kopia may list a directory twice (once to estimate the backup's size, once to upload it); the
// entries of a directory are counted once, by the first listing that reaches its end.

// NotPreserved counts entries whose content a backup keeps but not all of their metadata.
type NotPreserved struct {
	// HardLinks counts files with more than one link, once per file.
	HardLinks Found
	// Xattrs counts files and directories with extended attributes; XattrNames holds the first
	// attribute names seen.
	Xattrs     Found
	XattrNames []string
	// NonUTF8Names counts entries whose name is not valid UTF-8.
	NonUTF8Names Found
}

// Found counts entries and keeps the first paths (relative to the volume).
type Found struct {
	Count int64
	First []string
}

// maxPathsKept bounds the paths a Found keeps, and maxXattrNames the attribute names.
const (
	maxPathsKept  = 5
	maxXattrNames = 8
)

func (f *Found) add(paths ...string) {
	f.Count += int64(len(paths))
	for _, p := range paths {
		if len(f.First) < maxPathsKept {
			f.First = append(f.First, p)
		}
	}
}

// Any reports whether anything was found.
func (n NotPreserved) Any() bool {
	return n.HardLinks.Count+n.Xattrs.Count+n.NonUTF8Names.Count > 0
}

// String says what was found, e.g. `2 files with several hard links, restored as separate
// copies (a, b/c)`.
func (n NotPreserved) String() string {
	var parts []string
	part := func(f Found, what string) {
		if f.Count > 0 {
			parts = append(parts, fmt.Sprintf("%d %s (%s)", f.Count, what, quotePaths(f)))
		}
	}
	part(n.HardLinks, "files with several hard links, restored as separate copies")
	part(n.Xattrs, "entries with extended attributes "+strings.Join(n.XattrNames, ", ")+", not stored")
	part(n.NonUTF8Names, "names not valid UTF-8, restored with U+FFFD for each invalid byte")
	return strings.Join(parts, "; ")
}

// maxPathShown bounds a path in a summary; the end of a longer one is shown.
const maxPathShown = 200

func quotePaths(f Found) string {
	q := make([]string, len(f.First))
	for i, p := range f.First {
		if len(p) > maxPathShown {
			p = "…" + p[len(p)-maxPathShown:]
		}
		q[i] = fmt.Sprintf("%q", p)
	}
	s := strings.Join(q, ", ")
	if f.Count > int64(len(f.First)) {
		s += fmt.Sprintf(", and %d more", f.Count-int64(len(f.First)))
	}
	return s
}

// fileID identifies a file or directory.
type fileID struct{ dev, ino uint64 }

func idOf(st *unix.Stat_t) fileID { return fileID{st.Dev, st.Ino} }

// fileSet is a set of files, compact for the common case of one file system: an entry costs
// about 10 bytes, which matters for volumes of a million directories.
type fileSet struct {
	dev   uint64
	inos  map[uint64]struct{} // files on dev
	other map[fileID]struct{} // files on other devices (mounts beneath the volume)
}

func newFileSet() *fileSet {
	return &fileSet{inos: map[uint64]struct{}{}, other: map[fileID]struct{}{}}
}

func (s *fileSet) has(id fileID) bool {
	if len(s.inos) > 0 && id.dev == s.dev {
		_, ok := s.inos[id.ino]
		return ok
	}
	_, ok := s.other[id]
	return ok
}

func (s *fileSet) add(id fileID) {
	if len(s.inos) == 0 {
		s.dev = id.dev
	}
	if id.dev == s.dev {
		s.inos[id.ino] = struct{}{}
		return
	}
	s.other[id] = struct{}{}
}

// metadataReport collects a backup's NotPreserved.
type metadataReport struct {
	mu      sync.Mutex
	counted *fileSet        // directories whose entries were counted
	linked  map[fileID]bool // files with several links, already counted
	n       NotPreserved
}

func newMetadataReport() *metadataReport {
	return &metadataReport{counted: newFileSet(), linked: map[fileID]bool{}}
}

// isCounted reports whether the entries of directory id were counted already.
func (m *metadataReport) isCounted(id fileID) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.counted.has(id)
}

// dirFindings are what one listing of a directory found.
type dirFindings struct {
	links           []linkFinding
	xattrs, nonUTF8 []string
	xattrNames      []string
}

type linkFinding struct {
	id  fileID
	rel string
}

// commit adds the findings of a complete listing of directory id, unless another listing did.
func (m *metadataReport) commit(id fileID, f *dirFindings) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.counted.has(id) {
		return
	}
	m.counted.add(id)
	for _, l := range f.links {
		if !m.linked[l.id] {
			m.linked[l.id] = true
			m.n.HardLinks.add(l.rel)
		}
	}
	m.n.Xattrs.add(f.xattrs...)
	m.n.NonUTF8Names.add(f.nonUTF8...)
	for _, name := range f.xattrNames {
		if len(m.n.XattrNames) < maxXattrNames && !slices.Contains(m.n.XattrNames, name) {
			m.n.XattrNames = append(m.n.XattrNames, name)
		}
	}
}

func (m *metadataReport) result() NotPreserved {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.n
	n.HardLinks.First = append([]string(nil), n.HardLinks.First...)
	n.Xattrs.First = append([]string(nil), n.Xattrs.First...)
	n.NonUTF8Names.First = append([]string(nil), n.NonUTF8Names.First...)
	n.XattrNames = append([]string(nil), n.XattrNames...)
	return n
}

// noteXattrs records names, the extended attributes of the entry at rel.
func (f *dirFindings) noteXattrs(rel string, names []string) {
	if len(names) == 0 {
		return
	}
	f.xattrs = append(f.xattrs, rel)
	for _, n := range names {
		if len(f.xattrNames) < maxXattrNames && !slices.Contains(f.xattrNames, n) {
			f.xattrNames = append(f.xattrNames, n)
		}
	}
}

// noListxattrat is set once the kernel said it has no listxattrat (before Linux 6.13).
var noListxattrat atomic.Bool

// xattrsAt lists the extended attributes of name in the open directory dir, without following
// a symlink and without opening it: listxattrat with AT_SYMLINK_NOFOLLOW, as fstatat looks at
// an entry. ok is false when the kernel has no listxattrat.
func xattrsAt(dir int, name string) (names []string, ok bool) {
	if noListxattrat.Load() {
		return nil, false
	}
	p, err := unix.BytePtrFromString(name)
	if err != nil {
		return nil, true // a name with a NUL byte cannot be listed; it cannot be opened either
	}
	names, err = xattrList(func(buf []byte) (int, error) {
		var b unsafe.Pointer
		if len(buf) > 0 {
			b = unsafe.Pointer(&buf[0])
		}
		n, _, errno := unix.Syscall6(unix.SYS_LISTXATTRAT, uintptr(dir), uintptr(unsafe.Pointer(p)),
			unix.AT_SYMLINK_NOFOLLOW, uintptr(b), uintptr(len(buf)), 0)
		if errno != 0 {
			return 0, errno
		}
		return int(n), nil
	})
	if errors.Is(err, unix.ENOSYS) {
		noListxattrat.Store(true)
		return nil, false
	}
	return names, true
}

// xattrsOf lists the extended attributes of the open file fd.
func xattrsOf(fd int) []string {
	names, _ := xattrList(func(buf []byte) (int, error) { return unix.Flistxattr(fd, buf) })
	return names
}

// xattrList lists attribute names with list, a listxattr call: none where the file system has
// none, or they cannot be listed.
func xattrList(list func([]byte) (int, error)) ([]string, error) {
	for {
		size, err := list(nil)
		if err != nil || size <= 0 {
			return nil, err
		}
		buf := make([]byte, size)
		n, err := list(buf)
		if errors.Is(err, unix.ERANGE) {
			continue // attributes were added since
		}
		if err != nil {
			return nil, err
		}
		var names []string
		for _, name := range strings.Split(string(buf[:n]), "\x00") {
			if name != "" {
				names = append(names, name)
			}
		}
		return names, nil
	}
}

// storedName is name as Kopia stores it: a JSON string, with U+FFFD for each invalid byte.
func storedName(name string) string {
	if utf8.ValidString(name) {
		return name
	}
	var b strings.Builder
	for len(name) > 0 {
		r, size := utf8.DecodeRuneInString(name)
		b.WriteRune(r) // utf8.RuneError for an invalid byte
		name = name[size:]
	}
	return b.String()
}
