package uploader_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ferry-backup/ferry/internal/repository/repotest"
	"github.com/ferry-backup/ferry/internal/uploader"
)

// What a snapshot does not keep is counted, once per file, by the first backup (which also
// walks the volume to estimate its size) as by an incremental one: files with several hard
// links (restored as separate copies), files and directories with extended attributes (not
// stored), names that are not valid UTF-8 (restored with U+FFFD). An invalid name whose stored
// form is taken in its directory would overwrite the other entry on restore: it is not backed up,
// and reported as such. Extended attributes are listed with listxattrat, or on kernels without
// it by opening each file.
func TestMetadataNotKeptIsCounted(t *testing.T) {
	t.Run("listxattrat", testMetadataNotKeptIsCounted)
	t.Run("open and flistxattr", func(t *testing.T) {
		uploader.WithoutListxattrat(t)
		testMetadataNotKeptIsCounted(t)
	})
}

func testMetadataNotKeptIsCounted(t *testing.T) {
	rep := openRepo(t, repotest.Filesystem(t), "pw")
	vol := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(vol, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(vol, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	link := func(from, to string) {
		t.Helper()
		if err := os.Link(filepath.Join(vol, from), filepath.Join(vol, to)); err != nil {
			t.Fatal(err)
		}
	}
	setXattr := func(name, attr string) {
		t.Helper()
		if err := unix.Lsetxattr(filepath.Join(vol, name), attr, []byte("1"), 0); err != nil {
			t.Fatalf("set %s on %s (the test needs a file system with extended attributes): %v", attr, name, err)
		}
	}
	write("linked/one", "three names")
	link("linked/one", "linked/two")
	link("linked/one", "elsewhere")
	write("pair-a", "two names")
	link("pair-a", "pair-b")
	write("attrs/file", "with an attribute")
	write("attrs/other", "with another")
	setXattr("attrs/file", "user.ferry-test")
	setXattr("attrs", "user.ferry-test")
	setXattr("attrs/other", "trusted.ferry-test")
	if err := os.Symlink("file", filepath.Join(vol, "attrs", "link")); err != nil {
		t.Fatal(err)
	}
	write("bad-\xff", "an invalid name")
	write("dup-\xfe", "first of two invalid names stored alike")
	write("dup-\xfd", "second of two invalid names stored alike")
	write("val-\uFFFD", "a valid name")
	write("val-\xff", "an invalid name stored as the valid one")

	wantLinks := map[string]bool{"linked/one": true, "linked/two": true, "elsewhere": true, "pair-a": true, "pair-b": true}
	for i, pass := range []string{"first backup", "incremental backup"} {
		res, err := uploader.Backup(t.Context(), rep, vol, uploader.BackupOptions{})
		if err != nil {
			t.Fatalf("%s: %v", pass, err)
		}
		if i == 1 && res.ParentID == "" {
			t.Fatalf("%s had no parent", pass)
		}
		n := res.Stats.NotPreserved
		if n.HardLinks.Count != 2 || len(n.HardLinks.First) != 2 || !wantLinks[n.HardLinks.First[0]] || !wantLinks[n.HardLinks.First[1]] {
			t.Errorf("%s: hard links %+v, want 2 files among %v", pass, n.HardLinks, wantLinks)
		}
		slices.Sort(n.Xattrs.First)
		slices.Sort(n.XattrNames)
		if n.Xattrs.Count != 3 || !slices.Equal(n.Xattrs.First, []string{"attrs", "attrs/file", "attrs/other"}) ||
			!slices.Equal(n.XattrNames, []string{"trusted.ferry-test", "user.ferry-test"}) {
			t.Errorf("%s: extended attributes %+v %v", pass, n.Xattrs, n.XattrNames)
		}
		if n.NonUTF8Names.Count != 2 || !slices.Contains(n.NonUTF8Names.First, "bad-\xff") {
			t.Errorf("%s: invalid names %+v, want bad-\\xff and one of the dup- names", pass, n.NonUTF8Names)
		}
		messages := strings.Join(res.Stats.ErrorMessages, "\n")
		if res.Stats.Errors != 2 || !strings.Contains(messages, "val-\xff") || strings.Count(messages, "not valid UTF-8") != 2 {
			t.Errorf("%s: %d entries not backed up, want the invalid name stored as a valid one and the second dup-: %q",
				pass, res.Stats.Errors, res.Stats.ErrorMessages)
		}
		if !strings.Contains(n.String(), "hard links") || !strings.Contains(n.String(), "user.ferry-test") {
			t.Errorf("%s: summary %q", pass, n.String())
		}

		if i == 0 {
			dst := t.TempDir()
			if _, err := uploader.Restore(t.Context(), rep, res.SnapshotID, dst, uploader.RestoreOptions{}); err != nil {
				t.Fatal(err)
			}
			requireRestored(t, dst)
		}
	}
}

// requireRestored checks the restore of TestMetadataNotKeptIsCounted's volume: what the backup
// said it would not keep is indeed not kept, and nothing else is lost.
func requireRestored(t *testing.T, dst string) {
	t.Helper()
	for name, want := range map[string]string{
		"linked/one": "three names", "linked/two": "three names", "elsewhere": "three names",
		"bad-\uFFFD": "an invalid name", "val-\uFFFD": "a valid name",
	} {
		got, err := os.ReadFile(filepath.Join(dst, name))
		if err != nil || string(got) != want {
			t.Errorf("%q restored with %q, %v; want %q", name, got, err, want)
		}
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(dst, "linked", "one"), &st); err != nil || st.Nlink != 1 {
		t.Errorf("a hard-linked file was restored with %d links, %v; want a separate copy", st.Nlink, err)
	}
	if size, err := unix.Listxattr(filepath.Join(dst, "attrs", "file"), nil); err != nil || size != 0 {
		t.Errorf("extended attributes restored: %d bytes, %v", size, err)
	}
	dups, err := filepath.Glob(filepath.Join(dst, "dup-*"))
	if err != nil || len(dups) != 1 {
		t.Errorf("the two invalid names stored alike restored as %q, %v; want one", dups, err)
	}
}
