package uploader_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferry-backup/ferry/internal/uploader"
)

// archiveOf writes a tar stream of the given headers; a regular file's content is body[name].
func archiveOf(t *testing.T, headers []*tar.Header, body map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range headers {
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(body[h.Name]))
		}
		if h.Format == tar.FormatUnknown {
			h.Format = tar.FormatPAX
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := io.WriteString(tw, body[h.Name]); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

var when = time.Date(2021, 3, 4, 5, 6, 7, 123456789, time.UTC)

func TestRestoreArchiveWritesTheTree(t *testing.T) {
	headers := []*tar.Header{
		{Name: "a/", Typeflag: tar.TypeDir, Mode: 0o750, ModTime: when},
		{Name: "a/b/", Typeflag: tar.TypeDir, Mode: 0o700, ModTime: when.Add(time.Hour)},
		{Name: "a/b/f", Typeflag: tar.TypeReg, Mode: 0o4751, ModTime: when},
		{Name: "a/link", Typeflag: tar.TypeSymlink, Linkname: "b/f", Mode: 0o777, ModTime: when},
		{Name: "abs", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd", Mode: 0o777, ModTime: when},
		{Name: "empty/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: when},
		{Name: "deep/er/file", Typeflag: tar.TypeReg, Mode: 0o600, ModTime: when}, // parents not listed
		{Name: "fifo", Typeflag: tar.TypeFifo, Mode: 0o644, ModTime: when},
		{Name: "dev", Typeflag: tar.TypeChar, Mode: 0o644, Devmajor: 1, Devminor: 3, ModTime: when},
		{Name: "hard", Typeflag: tar.TypeLink, Linkname: "a/b/f", ModTime: when},
	}
	data := archiveOf(t, headers, map[string]string{"a/b/f": "hello", "deep/er/file": strings.Repeat("x", 3<<20)})
	dir := filepath.Join(t.TempDir(), "vol")
	var last uploader.Progress
	st, err := uploader.RestoreArchive(context.Background(), bytes.NewReader(data), dir, uploader.ArchiveOptions{
		TotalBytes: 5 + 3<<20, TotalFiles: 2, Progress: func(p uploader.Progress) { last = p },
	})
	if err != nil {
		t.Fatal(err)
	}
	if st.Files != 2 || st.Dirs != 3 || st.Symlinks != 2 || st.Bytes != 5+3<<20 {
		t.Errorf("stats %+v", st.RestoreStats)
	}
	if st.NotRestored.Count != 3 || !strings.Contains(strings.Join(st.NotRestored.First, ","), "fifo (FIFO)") {
		t.Errorf("not restored: %+v", st.NotRestored)
	}
	if last.BytesDone != 5+3<<20 || last.FilesDone != 2 || last.TotalBytes != 5+3<<20 {
		t.Errorf("last progress %+v", last)
	}
	check := func(rel string, mode os.FileMode, mtime time.Time) {
		t.Helper()
		fi, err := os.Lstat(filepath.Join(dir, rel))
		if err != nil {
			t.Error(err)
			return
		}
		if fi.Mode() != mode {
			t.Errorf("%s: mode %v, want %v", rel, fi.Mode(), mode)
		}
		if !mtime.IsZero() && !fi.ModTime().Equal(mtime) {
			t.Errorf("%s: mtime %v, want %v", rel, fi.ModTime(), mtime)
		}
	}
	check("a", os.ModeDir|0o750, when)
	check("a/b", os.ModeDir|0o700, when.Add(time.Hour))
	check("a/b/f", os.ModeSetuid|0o751, when)
	check("a/link", os.ModeSymlink|0o777, when)
	check("empty", os.ModeDir|0o755, when)
	check("deep/er", os.ModeDir|0o700, time.Time{})
	if got, _ := os.ReadFile(filepath.Join(dir, "a/b/f")); string(got) != "hello" {
		t.Errorf("a/b/f holds %q", got)
	}
	if target, _ := os.Readlink(filepath.Join(dir, "abs")); target != "/etc/passwd" {
		t.Errorf("abs -> %q", target)
	}
	for _, left := range []string{"fifo", "dev", "hard"} {
		if _, err := os.Lstat(filepath.Join(dir, left)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s was created: %v", left, err)
		}
	}
}

// The archive is the tenant's (its names come from the backed-up volume) and so is the target:
// no name may lead outside, and no symlink planted in the target may be written through.
func TestRestoreArchiveWritesNothingOutside(t *testing.T) {
	for _, name := range []string{"../escape", "/escape", "a/../../escape", "./../escape"} {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			dir := filepath.Join(root, "vol")
			data := archiveOf(t, []*tar.Header{{Name: name, Typeflag: tar.TypeReg, Mode: 0o644}}, map[string]string{name: "x"})
			_, err := uploader.RestoreArchive(context.Background(), bytes.NewReader(data), dir, uploader.ArchiveOptions{})
			if !errors.Is(err, uploader.ErrOutsideTarget) {
				t.Errorf("err = %v, want ErrOutsideTarget", err)
			}
			if _, err := os.Lstat(filepath.Join(root, "escape")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("escape written outside: %v", err)
			}
		})
	}

	t.Run("planted symlinks", func(t *testing.T) {
		root := t.TempDir()
		dir, outside := filepath.Join(root, "vol"), filepath.Join(root, "outside")
		for _, d := range []string{dir, outside} {
			if err := os.Mkdir(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		secret := filepath.Join(outside, "secret")
		if err := os.WriteFile(secret, []byte("secret"), 0o600); err != nil {
			t.Fatal(err)
		}
		for link, target := range map[string]string{"dir": outside, "file": secret, "parent": outside} {
			if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
				t.Fatal(err)
			}
		}
		data := archiveOf(t, []*tar.Header{
			{Name: "dir/", Typeflag: tar.TypeDir, Mode: 0o777},
			{Name: "dir/secret", Typeflag: tar.TypeReg, Mode: 0o666},
			{Name: "file", Typeflag: tar.TypeReg, Mode: 0o666},
			{Name: "parent/new", Typeflag: tar.TypeReg, Mode: 0o666},
		}, map[string]string{"dir/secret": "overwritten", "file": "overwritten", "parent/new": "planted"})
		if _, err := uploader.RestoreArchive(context.Background(), bytes.NewReader(data), dir, uploader.ArchiveOptions{}); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(secret); string(got) != "secret" {
			t.Errorf("outside file now holds %q", got)
		}
		if entries, _ := os.ReadDir(outside); len(entries) != 1 {
			t.Errorf("outside holds %d entries", len(entries))
		}
		if fi, err := os.Stat(outside); err != nil || fi.Mode().Perm() != 0o755 {
			t.Errorf("outside directory changed: %v %v", fi.Mode(), err)
		}
		for _, rel := range []string{"dir", "file", "parent"} {
			if fi, err := os.Lstat(filepath.Join(dir, rel)); err != nil || fi.Mode()&os.ModeSymlink != 0 {
				t.Errorf("%s is still a symlink (%v)", rel, err)
			}
		}

		// Keeping existing entries, a planted symlink ends the restore instead.
		if err := os.Symlink(secret, filepath.Join(dir, "kept")); err != nil {
			t.Fatal(err)
		}
		data = archiveOf(t, []*tar.Header{{Name: "kept", Typeflag: tar.TypeReg, Mode: 0o666}}, map[string]string{"kept": "x"})
		_, err := uploader.RestoreArchive(context.Background(), bytes.NewReader(data), dir, uploader.ArchiveOptions{KeepExisting: true})
		if !errors.Is(err, uploader.ErrOutsideTarget) {
			t.Errorf("err = %v, want ErrOutsideTarget", err)
		}
		if got, _ := os.ReadFile(secret); string(got) != "secret" {
			t.Errorf("outside file now holds %q", got)
		}
	})
}

func TestRestoreArchiveFailures(t *testing.T) {
	full := archiveOf(t, []*tar.Header{{Name: "f", Typeflag: tar.TypeReg, Mode: 0o644}}, map[string]string{"f": strings.Repeat("y", 4096)})
	t.Run("truncated", func(t *testing.T) {
		dir := t.TempDir()
		_, err := uploader.RestoreArchive(context.Background(), bytes.NewReader(full[:1024]), dir, uploader.ArchiveOptions{})
		if err == nil {
			t.Fatal("a truncated archive restored")
		}
		entries, _ := os.ReadDir(dir)
		if len(entries) != 0 {
			t.Errorf("a truncated file was left: %v", entries)
		}
	})
	t.Run("canceled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := uploader.RestoreArchive(ctx, bytes.NewReader(full), t.TempDir(), uploader.ArchiveOptions{})
		if !errors.Is(err, uploader.ErrCanceled) {
			t.Errorf("err = %v, want ErrCanceled", err)
		}
	})
	t.Run("header hook", func(t *testing.T) {
		dir := t.TempDir()
		st, err := uploader.RestoreArchive(context.Background(), bytes.NewReader(full), dir, uploader.ArchiveOptions{
			Header: func(h *tar.Header) (string, error) { return "socket", nil },
		})
		if err != nil || st.NotRestored.Count != 1 || st.NotRestored.First[0] != "f (socket)" {
			t.Errorf("%+v %v", st, err)
		}
		boom := errors.New("boom")
		_, err = uploader.RestoreArchive(context.Background(), bytes.NewReader(full), dir, uploader.ArchiveOptions{
			Header: func(h *tar.Header) (string, error) { return "", boom },
		})
		if !errors.Is(err, boom) {
			t.Errorf("err = %v", err)
		}
	})
}
