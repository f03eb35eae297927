package uploader_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-backup/ferry/internal/repository"
	"github.com/ferry-backup/ferry/internal/repository/repotest"
	"github.com/ferry-backup/ferry/internal/uploader"
)

// verifyFixture backs up 12 random files of 1 MiB into a fresh filesystem repository and returns
// the location, the snapshot and the store's directory.
func verifyFixture(t *testing.T) (repository.Location, string, string) {
	t.Helper()
	src := t.TempDir()
	for i := range 12 {
		writeRandom(t, filepath.Join(src, "d", string(rune('a'+i))+".bin"), 1<<20, uint64(100+i))
	}
	loc := repotest.Filesystem(t)
	res, err := uploader.Backup(t.Context(), openRepo(t, loc, "pw"), src, uploader.BackupOptions{Source: "/ns/pvc/data"})
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	return loc, res.SnapshotID, loc.Config["path"]
}

// biggestPack returns the file and the blob ID of the largest data pack under the store's
// directory (the filesystem store shards a blob ID into directories and adds ".f").
func biggestPack(t *testing.T, store string) (file, id string) {
	t.Helper()
	var root string
	var size int64
	_ = filepath.WalkDir(store, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Name() == "kopia.repository.f" {
			root = filepath.Dir(p)
		}
		return err
	})
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		rel, _ := filepath.Rel(root, p)
		if err != nil || d.IsDir() || !strings.HasPrefix(rel, "p") {
			return err
		}
		if info, _ := d.Info(); info != nil && info.Size() > size {
			file, size = p, info.Size()
			id = strings.TrimSuffix(strings.ReplaceAll(rel, string(filepath.Separator), ""), ".f")
		}
		return nil
	})
	if file == "" {
		t.Fatalf("no pack blob under %s", store)
	}
	return file, id
}

func verifyWith(t *testing.T, loc repository.Location, id string, opts uploader.VerifyOptions) uploader.VerifyResult {
	t.Helper()
	rep := openRepoWith(t, loc, "pw", func(o *repository.Options) { o.NoCache = true })
	if opts.Packs == nil {
		packs, err := rep.PackBlobs(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		opts.Packs = packs
	}
	res, err := uploader.Verify(t.Context(), rep, id, opts)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	return res
}

func TestVerifyCleanSnapshot(t *testing.T) {
	loc, id, _ := verifyFixture(t)
	res := verifyWith(t, loc, id, uploader.VerifyOptions{Percent: 100})
	if res.ErrorCount != 0 || res.Files != 12 || res.FilesRead != 12 || res.BytesRead != 12<<20 || res.Dirs != 2 || res.Contents < 12 {
		t.Fatalf("result = %+v, want 12 files, 2 directories, all read, no errors", res)
	}
	sample := verifyWith(t, loc, id, uploader.VerifyOptions{Percent: 50, Seed: 7})
	if sample.ErrorCount != 0 || sample.Files != 12 || sample.FilesRead == 0 || sample.FilesRead == 12 {
		t.Fatalf("50%% sample = %+v, want some but not all files read", sample)
	}
	none := verifyWith(t, loc, id, uploader.VerifyOptions{})
	if none.FilesRead != 0 || none.Files != 12 || none.ErrorCount != 0 {
		t.Fatalf("index-only verification = %+v", none)
	}
}

func TestVerifyFindsACorruptedPack(t *testing.T) {
	loc, id, store := verifyFixture(t)
	file, pack := biggestPack(t, store)
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for i := len(data) / 2; i < len(data)/2+64; i++ {
		data[i] ^= 0xff
	}
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	res := verifyWith(t, loc, id, uploader.VerifyOptions{Percent: 100})
	if res.ErrorCount == 0 || len(res.Errors) == 0 {
		t.Fatalf("verification of a snapshot with a corrupted pack found nothing: %+v", res)
	}
	for _, e := range res.Errors {
		if !strings.HasPrefix(e.Path, "/d/") || !strings.HasSuffix(e.Path, ".bin") {
			t.Errorf("error %q does not name a file of the snapshot", e)
		}
		if !strings.Contains(e.Message, "in pack "+pack) {
			t.Errorf("error %q does not name the corrupted pack %s", e, pack)
		}
	}
	if res.FilesRead+res.ErrorCount != 12 {
		t.Errorf("read %d files and found %d errors, want 12 in all", res.FilesRead, res.ErrorCount)
	}
	t.Logf("first error: %v", res.Errors[0])
}

func TestVerifyFindsAMissingPack(t *testing.T) {
	loc, id, store := verifyFixture(t)
	file, pack := biggestPack(t, store)
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	// The pack listing finds it without reading a byte of data.
	res := verifyWith(t, loc, id, uploader.VerifyOptions{Percent: 0})
	if res.ErrorCount == 0 {
		t.Fatalf("verification of a snapshot with a missing pack found nothing: %+v", res)
	}
	for _, e := range res.Errors {
		if !strings.HasPrefix(e.Path, "/d/") || !strings.Contains(e.Message, pack+", which is missing") {
			t.Errorf("error %q does not name a file and the missing pack %s", e, pack)
		}
	}
	// Without the listing, reading finds it too.
	rep := openRepoWith(t, loc, "pw", func(o *repository.Options) { o.NoCache = true })
	read, err := uploader.Verify(t.Context(), rep, id, uploader.VerifyOptions{Percent: 100, MaxErrors: 2})
	if err != nil {
		t.Fatal(err)
	}
	if read.ErrorCount != res.ErrorCount || len(read.Errors) != 2 {
		t.Errorf("reading found %d errors (kept %d), the listing %d", read.ErrorCount, len(read.Errors), res.ErrorCount)
	}
}

func TestVerifyUnknownSnapshot(t *testing.T) {
	loc, _, _ := verifyFixture(t)
	rep := openRepoWith(t, loc, "pw", func(o *repository.Options) { o.NoCache = true })
	if _, err := uploader.Verify(t.Context(), rep, "0123456789abcdef0123456789abcdef", uploader.VerifyOptions{}); err == nil {
		t.Fatal("verifying a snapshot that does not exist succeeded")
	}
}
