package uploader_test

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// writeRandom writes size bytes of seeded pseudo-random (incompressible) data.
func writeRandom(t testing.TB, path string, size int64, seed uint64) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var key [32]byte
	key[0], key[1] = byte(seed), byte(seed>>8)
	if _, err := io.CopyN(f, rand.NewChaCha8(key), size); err != nil {
		t.Fatal(err)
	}
}

var oldTime = time.Date(2024, 2, 29, 12, 30, 45, 0, time.UTC)

// makeTree builds a directory with every kind of entry a volume holds.
func makeTree(t testing.TB, dir string, bigFile int64) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"plain.txt":                    "hello ferry\n",
		"empty-file":                   "",
		"nested/a/b/c/deep.txt":        "deep",
		"unicode/Grüße-日本語-🚢.txt":      "unicode",
		"names/with space.txt":         "space",
		"names/with\nnewline":          "newline",
		"names/-leading-dash":          "dash",
		"modes/read-only.txt":          "ro",
		"modes/executable.sh":          "#!/bin/sh\necho hi\n",
		"modes/private.key":            "secret-ish",
		"compressible/lorem-ipsum.txt": string(make([]byte, 200_000)),
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		must(os.MkdirAll(filepath.Dir(p), 0o755))
		must(os.WriteFile(p, []byte(body), 0o644))
	}
	must(os.Chmod(filepath.Join(dir, "modes/read-only.txt"), 0o444))
	must(os.Chmod(filepath.Join(dir, "modes/executable.sh"), 0o755))
	must(os.Chmod(filepath.Join(dir, "modes/private.key"), 0o600))
	must(os.MkdirAll(filepath.Join(dir, "empty-dir"), 0o755))
	must(os.MkdirAll(filepath.Join(dir, "modes/locked-dir"), 0o700))
	must(os.Symlink("../plain.txt", filepath.Join(dir, "nested/relative-link")))
	must(os.Symlink("/does/not/exist", filepath.Join(dir, "dangling-absolute-link")))
	writeRandom(t, filepath.Join(dir, "random/1MiB.bin"), 1<<20, 1)

	// A sparse file: 64 MiB long, a few bytes of data.
	sparse, err := os.Create(filepath.Join(dir, "sparse.img"))
	must(err)
	_, err = sparse.WriteAt([]byte("start"), 0)
	must(err)
	_, err = sparse.WriteAt([]byte("end"), 64<<20-3)
	must(err)
	must(sparse.Close())
	if bigFile > 0 {
		writeRandom(t, filepath.Join(dir, "big/large.bin"), bigFile, 2)
	}
	// Set times last, deepest first, so writing children does not move them again.
	var paths []string
	must(filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		paths = append(paths, p)
		return err
	}))
	for i := len(paths) - 1; i >= 0; i-- {
		if st, err := os.Lstat(paths[i]); err == nil && st.Mode()&os.ModeSymlink == 0 {
			must(os.Chtimes(paths[i], oldTime, oldTime.Add(time.Duration(i)*time.Second)))
		}
	}
}

type entry struct {
	mode   fs.FileMode
	size   int64
	mtime  time.Time
	digest string
	link   string
}

// describe returns every entry below dir by relative path.
func describe(t testing.TB, dir string) map[string]entry {
	t.Helper()
	out := map[string]entry{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		st, err := os.Lstat(p)
		if err != nil {
			return err
		}
		e := entry{mode: st.Mode()}
		switch {
		case st.Mode()&os.ModeSymlink != 0:
			e.link, err = os.Readlink(p)
		case st.IsDir():
			e.mtime = st.ModTime()
		default:
			e.size, e.mtime = st.Size(), st.ModTime()
			e.digest, err = fileDigest(p)
		}
		if rel == "." {
			e.mtime = time.Time{} // the target root's own time is the caller's
		}
		out[rel] = e
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func fileDigest(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// requireSameTree fails unless both trees have the same entries, kinds, modes, sizes, contents,
// modification times and symlink targets.
func requireSameTree(t testing.TB, want, got string) {
	t.Helper()
	compareTrees(t, describe(t, want), describe(t, got))
}

// requireSameFiles is requireSameTree without directory modification times, which the kopia
// CLI does not restore (KOPIA-NOTES pitfall 2).
func requireSameFiles(t testing.TB, want, got string) {
	t.Helper()
	w, g := describe(t, want), describe(t, got)
	for _, m := range []map[string]entry{w, g} {
		for rel, e := range m {
			if e.mode.IsDir() {
				e.mtime = time.Time{}
				m[rel] = e
			}
		}
	}
	compareTrees(t, w, g)
}

func compareTrees(t testing.TB, w, g map[string]entry) {
	t.Helper()
	for rel, we := range w {
		ge, ok := g[rel]
		switch {
		case !ok:
			t.Errorf("%q missing from the restore", rel)
		case ge.mode != we.mode:
			t.Errorf("%q: mode %v, want %v", rel, ge.mode, we.mode)
		case ge.size != we.size || ge.digest != we.digest:
			t.Errorf("%q: content differs (size %d, want %d)", rel, ge.size, we.size)
		case ge.link != we.link:
			t.Errorf("%q: symlink to %q, want %q", rel, ge.link, we.link)
		case !ge.mtime.Equal(we.mtime):
			t.Errorf("%q: mtime %v, want %v", rel, ge.mtime, we.mtime)
		}
	}
	for rel := range g {
		if _, ok := w[rel]; !ok {
			t.Errorf("%q restored but not in the source", rel)
		}
	}
}

// allocatedBytes is the disk space a file really uses.
func allocatedBytes(t testing.TB, p string) int64 {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Blocks * 512
}
