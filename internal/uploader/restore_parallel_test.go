package uploader_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/ferry-backup/ferry/internal/repository"
	"github.com/ferry-backup/ferry/internal/repository/repotest"
	"github.com/ferry-backup/ferry/internal/uploader"
)

func TestDefaultRestoreParallelScalesWithGOMAXPROCS(t *testing.T) {
	defer runtime.SetDefaultGOMAXPROCS()
	for _, tt := range []struct{ procs, want int }{{1, 4}, {2, 4}, {3, 6}, {8, 16}, {64, 16}} {
		runtime.GOMAXPROCS(tt.procs)
		if got := uploader.DefaultRestoreParallel(); got != tt.want {
			t.Errorf("GOMAXPROCS %d: DefaultRestoreParallel() = %d, want %d", tt.procs, got, tt.want)
		}
	}
}

// Large files are cut into segments written by several workers: every byte, hole and length
// must come out as with one writer, at any parallelism.
func TestLargeFilesRestoredBySeveralWorkersAreIdentical(t *testing.T) {
	runtime.GOMAXPROCS(4) // segments are written by several workers from 4 CPUs on
	defer runtime.SetDefaultGOMAXPROCS()
	src := t.TempDir()
	writeRandom(t, filepath.Join(src, "odd.bin"), 40<<20+12345, 1) // 3 segments, the last short
	writeRandom(t, filepath.Join(src, "even.bin"), 48<<20, 2)      // exactly 3 segments
	writeRandom(t, filepath.Join(src, "sub", "small.bin"), 100<<10, 3)
	sparse, err := os.Create(filepath.Join(src, "sparse.img")) // data inside the second segment only
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sparse.WriteAt([]byte("middle"), 20<<20); err != nil {
		t.Fatal(err)
	}
	if err := sparse.Truncate(70 << 20); err != nil {
		t.Fatal(err)
	}
	if err := sparse.Close(); err != nil {
		t.Fatal(err)
	}
	loc := repotest.Filesystem(t)
	rep := openRepo(t, loc, "pw")
	res, err := uploader.Backup(t.Context(), rep, src, uploader.BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	restorer := openRepoWith(t, loc, "pw", func(o *repository.Options) { o.NoCache = true })
	for _, parallel := range []int{1, 3, 0} {
		for _, sparse := range []bool{false, true} {
			dst := filepath.Join(t.TempDir(), "restore")
			var last uploader.Progress
			st, err := uploader.Restore(t.Context(), restorer, res.SnapshotID, dst, uploader.RestoreOptions{
				Parallel: parallel, WriteSparseFiles: sparse, Progress: func(p uploader.Progress) { last = p },
			})
			if err != nil {
				t.Fatalf("parallel %d, sparse %v: %v", parallel, sparse, err)
			}
			if st.Bytes != res.Stats.Bytes || last.BytesDone != res.Stats.Bytes {
				t.Errorf("parallel %d, sparse %v: restored %d bytes, progress %d, backed up %d",
					parallel, sparse, st.Bytes, last.BytesDone, res.Stats.Bytes)
			}
			requireSameTree(t, src, dst)
			if got := allocatedBytes(t, filepath.Join(dst, "sparse.img")); sparse && got > 1<<20 {
				t.Errorf("parallel %d: sparse file restored with %d bytes allocated", parallel, got)
			}
		}
	}
}

// However many workers a restore has, at most MaxLargeReaders of them (helpers included) read
// large files at once: each holds buffers of its chunks' size, and 32 of them took 1.5 GiB.
func TestARestoreBoundsItsReadersOfLargeFiles(t *testing.T) {
	runtime.GOMAXPROCS(16)
	defer runtime.SetDefaultGOMAXPROCS()
	src := t.TempDir()
	for i := range 12 {
		writeRandom(t, filepath.Join(src, fmt.Sprintf("d%d", i%3), fmt.Sprintf("f%d.bin", i)), 4<<20+int64(i), uint64(10+i))
	}
	writeRandom(t, filepath.Join(src, "big.bin"), 40<<20, 9) // segments, with helpers
	loc := repotest.Filesystem(t)
	rep := openRepo(t, loc, "pw")
	res, err := uploader.Backup(t.Context(), rep, src, uploader.BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	most, started := 0, 0
	uploader.OnLargeReaderStarted(t, func(taken int) {
		mu.Lock()
		defer mu.Unlock()
		most, started = max(most, taken), started+1
	})
	restorer := openRepoWith(t, loc, "pw", func(o *repository.Options) { o.NoCache = true })
	dst := filepath.Join(t.TempDir(), "restore")
	if _, err := uploader.Restore(t.Context(), restorer, res.SnapshotID, dst, uploader.RestoreOptions{Parallel: 16}); err != nil {
		t.Fatal(err)
	}
	requireSameTree(t, src, dst)
	t.Logf("%d readers of large files, at most %d at once", started, most)
	if started < 13 {
		t.Errorf("%d readers of large files started, want one per large file at least (13)", started)
	}
	if most > uploader.MaxLargeReaders {
		t.Errorf("%d readers of large files at once, want at most %d", most, uploader.MaxLargeReaders)
	}
}

// A failure in any segment fails the restore of the file, and its temporary file is removed.
func TestCorruptedLargeFileFailsItsRestoreAndLeavesNoTemporaryFile(t *testing.T) {
	runtime.GOMAXPROCS(4)
	defer runtime.SetDefaultGOMAXPROCS()
	loc := repotest.Filesystem(t)
	rep := openRepo(t, loc, "pw")
	src := t.TempDir()
	writeRandom(t, filepath.Join(src, "large.bin"), 64<<20, 4)
	res, err := uploader.Backup(t.Context(), rep, src, uploader.BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	corruptPacks(t, loc)
	fresh := openRepoWith(t, loc, "pw", func(o *repository.Options) { o.NoCache = true })
	// Into an empty volume (the file is written under its name) and over an older copy (written
	// aside, renamed over it only when whole): nothing partly written is left, and the older copy
	// is kept.
	for _, old := range []string{"", "the older copy"} {
		dst := t.TempDir()
		if old != "" {
			if err := os.WriteFile(filepath.Join(dst, "large.bin"), []byte(old), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := uploader.Restore(t.Context(), fresh, res.SnapshotID, dst, uploader.RestoreOptions{Parallel: 4}); err == nil {
			t.Fatal("restore of a corrupted large file succeeded")
		} else {
			t.Logf("restore reported: %v", err)
		}
		err = filepath.WalkDir(dst, func(p string, d os.DirEntry, err error) error {
			if err == nil && strings.HasPrefix(d.Name(), ".ferry-restore-") {
				t.Errorf("temporary file left behind: %s", p)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(dst, "large.bin"))
		switch {
		case old == "" && !errors.Is(err, os.ErrNotExist):
			t.Errorf("a partly written large.bin was left (%d bytes, %v)", len(got), err)
		case old != "" && string(got) != old:
			t.Errorf("the older large.bin was replaced by %d bytes (%v)", len(got), err)
		}
	}
}
