package uploader_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-backup/ferry/internal/repository"
	"github.com/ferry-backup/ferry/internal/repository/repotest"
	"github.com/ferry-backup/ferry/internal/uploader"
)

// A backup flushes what it wrote every FlushContents contents (so that a volume of millions of
// small files does not hold every new content's index entry in memory until the end): the store
// gets an index blob per flush, and the snapshot restores identically.
func TestABackupOfManySmallFilesFlushesAsItGoes(t *testing.T) {
	src := t.TempDir()
	for d := range 40 {
		for f := range 10 {
			p := filepath.Join(src, fmt.Sprintf("d%02d", d), fmt.Sprintf("f%d.txt", f))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(fmt.Sprintf("file %d of directory %d\n", f, d)), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	indexBlobs := func(flushContents int64) (int, string) {
		t.Helper()
		loc := repotest.Filesystem(t)
		rep := openRepo(t, loc, "pw")
		res, err := uploader.Backup(t.Context(), rep, src, uploader.BackupOptions{Source: "/app/small", FlushContents: flushContents})
		if err != nil {
			t.Fatalf("backup: %v", err)
		}
		n := 0
		err = filepath.WalkDir(loc.Config["path"], func(p string, d os.DirEntry, err error) error {
			// Index blobs are x…; the filesystem store keeps them in directory x.
			if err == nil && !d.IsDir() && strings.Contains(p, "/x/") {
				n++
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(t.TempDir(), "restore")
		restorer := openRepoWith(t, loc, "pw", func(o *repository.Options) { o.NoCache = true })
		if _, err := uploader.Restore(t.Context(), restorer, res.SnapshotID, dst, uploader.RestoreOptions{}); err != nil {
			t.Fatalf("restore: %v", err)
		}
		requireSameTree(t, src, dst)
		return n, res.SnapshotID
	}
	unflushed, _ := indexBlobs(-1)
	// 400 files and 41 directories. Contents may come faster than the store takes a flush (a
	// flush then takes all written since the last one began), but no worker goes more than 40
	// contents past the last flush's start, and each starts at most one content per worker
	// (MaxParallel) later: at least 441/(40+32) = 6 flushes, each an index blob.
	flushed, _ := indexBlobs(20)
	t.Logf("index blobs: %d without flushes on a count, %d flushing every 20 contents", unflushed, flushed)
	if flushed < unflushed+5 {
		t.Fatalf("flushing every 20 contents wrote %d index blobs, without %d: the backup did not flush as it went", flushed, unflushed)
	}
}
