package uploader_test

import (
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ferry-backup/ferry/internal/repository"
	"github.com/ferry-backup/ferry/internal/repository/repotest"
	"github.com/ferry-backup/ferry/internal/uploader"
)

// A restore writes a large file back to disk as it goes and drops what is on disk from the
// page cache: when it ends, at most the last two windows of the file are still cached, not the
// whole file (which, dirty, is what got memory-limited restores OOM-killed).
func TestRestoreWritesLargeFilesBackAsItGoes(t *testing.T) {
	dst := filepath.Join(t.TempDir(), "restore")
	var fs unix.Statfs_t
	if err := unix.Statfs(filepath.Dir(dst), &fs); err != nil {
		t.Fatal(err)
	}
	if fs.Type == unix.TMPFS_MAGIC {
		t.Skip("the test directory is on tmpfs, whose pages are memory: nothing is written back")
	}
	const size = 12 * uploader.WritebackWindow
	src := t.TempDir()
	writeRandom(t, filepath.Join(src, "big.bin"), size, 7)
	loc := repotest.Filesystem(t)
	res, err := uploader.Backup(t.Context(), openRepo(t, loc, "pw"), src, uploader.BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	restorer := openRepoWith(t, loc, "pw", func(o *repository.Options) { o.NoCache = true })
	if _, err := uploader.Restore(t.Context(), restorer, res.SnapshotID, dst, uploader.RestoreOptions{Parallel: 1}); err != nil {
		t.Fatal(err)
	}
	if cached := cachedBytes(t, filepath.Join(dst, "big.bin")); cached > 2*uploader.WritebackWindow {
		t.Errorf("%d MiB of the %d MiB file restored are still in the page cache, want at most two windows (%d MiB)",
			cached>>20, size>>20, 2*uploader.WritebackWindow>>20)
	}
	requireSameTree(t, src, dst) // reads the file back: after the check above
}

// cachedBytes reports how much of the file at p is in the page cache (mincore of a mapping).
func cachedBytes(t *testing.T, p string) int64 {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	page := os.Getpagesize()
	vec := make([]byte, (len(m)+page-1)/page)
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatal(errno)
	}
	var n int64
	for _, v := range vec {
		if v&1 != 0 {
			n += int64(page)
		}
	}
	return n
}
