package uploader_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/ferry-backup/ferry/internal/repository"
	"github.com/ferry-backup/ferry/internal/repository/repotest"
	"github.com/ferry-backup/ferry/internal/uploader"
)

// A restore walks the snapshot depth first and writes files while it walks: when its first
// file is written it has read only the listings on the way there, not the tree's. (Kopia's own
// restore lists every directory first and holds an entry per file of the snapshot until it gets
// to them.)
func TestRestoreWritesFilesBeforeItHasWalkedTheTree(t *testing.T) {
	const dirs, perDir = 40, 300
	src := t.TempDir()
	for d := range dirs {
		dir := filepath.Join(src, fmt.Sprintf("d%02d", d))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for f := range perDir {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%03d", f)), fmt.Appendf(nil, "%d/%d", d, f), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	loc := repotest.Filesystem(t)
	res, err := uploader.Backup(t.Context(), openRepo(t, loc, "pw"), src, uploader.BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	listed := int64(-1)
	uploader.OnFirstFileWritten(t, func(n int64) { listed = n })
	restorer := openRepoWith(t, loc, "pw", func(o *repository.Options) { o.NoCache = true })
	st, err := uploader.Restore(t.Context(), restorer, res.SnapshotID, filepath.Join(t.TempDir(), "restore"), uploader.RestoreOptions{Parallel: 1})
	if err != nil {
		t.Fatal(err)
	}
	if st.Files != dirs*perDir || st.Dirs != dirs+1 {
		t.Errorf("restored %d files in %d directories, want %d in %d", st.Files, st.Dirs, dirs*perDir, dirs+1)
	}
	// The root and the first directory; the queue (64 entries a writer) is shorter than one
	// directory, so the walk cannot be further than the second.
	if listed < 1 || listed > 3 {
		t.Errorf("the first file was written with %d of %d directories listed, want the few on its way", listed, dirs+1)
	}
}
