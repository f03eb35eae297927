package harness

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// FillVolume writes files of seeded random bytes (total about size bytes in n files), a symlink
// and an empty directory into dir, with fixed modification times.
func FillVolume(dir string, n int, size int64, seed uint64) error {
	var key [32]byte
	key[0], key[1] = byte(seed), byte(seed>>8)
	rnd := rand.NewChaCha8(key)
	each := size / int64(max(n, 1))
	for i := range n {
		p := filepath.Join(dir, fmt.Sprintf("d%02d", i%7), fmt.Sprintf("file-%04d.bin", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(0o600+i%2*0o44))
		if err != nil {
			return err
		}
		_, err = io.CopyN(f, rnd, each)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "empty"), 0o750); err != nil {
		return err
	}
	if err := os.Symlink("d00", filepath.Join(dir, "link-to-d00")); err != nil && !os.IsExist(err) {
		return err
	}
	stamp := time.Date(2025, 6, 1, 8, 0, 0, 0, time.UTC).Add(time.Duration(seed) * time.Hour) // new data, new times
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.Type()&fs.ModeSymlink != 0 || p == dir {
			return err
		}
		return os.Chtimes(p, stamp, stamp)
	})
}

// Describe returns one line per entry below dir — path, type and mode, size, modification time,
// content digest or symlink target — sorted, so two trees compare with one string comparison.
// Entries under skip (relative paths) are left out.
func Describe(dir string, skip ...string) (string, error) {
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		for _, s := range skip {
			if rel == s || strings.HasPrefix(rel, s+"/") {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
		}
		st, err := os.Lstat(p)
		if err != nil {
			return err
		}
		line := fmt.Sprintf("%s %v", rel, st.Mode())
		switch {
		case st.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			line += " -> " + target
		case st.IsDir():
			line += " " + st.ModTime().UTC().Format(time.RFC3339)
		default:
			sum, err := digest(p)
			if err != nil {
				return err
			}
			line += fmt.Sprintf(" %d %s %s", st.Size(), st.ModTime().UTC().Format(time.RFC3339), sum)
		}
		lines = append(lines, line)
		return nil
	})
	sort.Strings(lines)
	return strings.Join(lines, "\n"), err
}

func digest(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)[:12]), nil
}

func mustJSON(v any) []byte {
	data, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return data
}
