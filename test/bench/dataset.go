package main

import (
	"encoding/binary"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"
)

// Seeds of the generators: the dataset and its 1% change are identical in every run.
const (
	dataSeed1, dataSeed2     = 0x4665727279, 0x62656e6368
	changeSeed1, changeSeed2 = 0x6368616e6765, 0x31
)

// Fixed modification times, so that the metadata is reproducible too.
var (
	baseTime   = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	changeTime = time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC)
)

const (
	kib = 1 << 10
	mib = 1 << 20
)

// spec is the shape of a dataset.
type spec struct {
	smallFiles  int // files of 1–16 KiB of random bytes, in nested directories
	filesPerDir int // small files per leaf directory
	// largeFiles incompressible files of largeSize bytes each.
	largeFiles int
	largeSize  int64
	// textFiles files of textSize bytes each of generated log lines (compressible).
	textFiles int
	textSize  int64
	// changeFactor: the 1% change touches 1/changeFactor of the bytes.
	changeFactor int64
}

// specs are the scales the benchmark knows: full ≈ 2 GiB and 100k files, small ≈ 115 MiB.
var specs = map[string]spec{
	"full":  {smallFiles: 100_000, filesPerDir: 100, largeFiles: 20, largeSize: 50 * mib, textFiles: 32, textSize: 8 * mib, changeFactor: 100},
	"small": {smallFiles: 6_000, filesPerDir: 100, largeFiles: 4, largeSize: 12 * mib, textFiles: 8, textSize: 2 * mib, changeFactor: 100},
}

// smallFile is one generated small file, remembered for the 1% change.
type smallFile struct {
	path string
	size int64
}

// dataset is a generated source tree.
type dataset struct {
	root  string
	spec  spec
	small []smallFile
	large []string
	text  []string
}

// treeStats counts a tree.
type treeStats struct {
	files, dirs, symlinks int
	bytes                 int64
}

func (s treeStats) String() string {
	return fmt.Sprintf("%.1f MiB in %d files, %d dirs, %d symlinks", float64(s.bytes)/mib, s.files, s.dirs, s.symlinks)
}

// generate writes the dataset of sp below root, which must not exist yet.
func generate(root string, sp spec) (*dataset, error) {
	d := &dataset{root: root, spec: sp}
	w := newWriter(rand.New(rand.NewPCG(dataSeed1, dataSeed2)))
	for i := range sp.smallFiles {
		dir := i / sp.filesPerDir
		rel := filepath.Join("small", fmt.Sprintf("a%03d", dir/32), fmt.Sprintf("b%02d", dir%32), fmt.Sprintf("f%06d.bin", i))
		size := int64(1*kib + w.rng.IntN(15*kib+1))
		if err := w.randomFile(filepath.Join(root, rel), size, w.smallMode()); err != nil {
			return nil, err
		}
		d.small = append(d.small, smallFile{path: rel, size: size})
	}
	for i := range sp.largeFiles {
		rel := filepath.Join("large", fmt.Sprintf("blob-%02d.bin", i))
		if err := w.randomFile(filepath.Join(root, rel), sp.largeSize, 0o644); err != nil {
			return nil, err
		}
		d.large = append(d.large, rel)
	}
	for i := range sp.textFiles {
		rel := filepath.Join("text", fmt.Sprintf("dir%d", i%4), fmt.Sprintf("app-%02d.log", i))
		if err := w.textFile(filepath.Join(root, rel), sp.textSize); err != nil {
			return nil, err
		}
		d.text = append(d.text, rel)
	}
	if err := d.addSpecials(); err != nil {
		return nil, err
	}
	return d, nil
}

// addSpecials adds symlinks, empty directories, an empty file and a private directory.
func (d *dataset) addSpecials() error {
	links := map[string]string{
		"links/to-file":  filepath.Join("..", d.small[0].path),
		"links/to-dir":   filepath.Join("..", "text"),
		"links/dangling": "/nonexistent/ferry-bench-target",
	}
	for name, target := range links {
		p := filepath.Join(d.root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("create directory: %w", err)
		}
		if err := os.Symlink(target, p); err != nil {
			return fmt.Errorf("create symlink: %w", err)
		}
	}
	dirs := map[string]fs.FileMode{"empty/a": 0o755, "empty/b/c": 0o755, "empty/private": 0o700}
	for name, mode := range dirs {
		p := filepath.Join(d.root, name)
		if err := os.MkdirAll(p, 0o755); err != nil {
			return fmt.Errorf("create directory: %w", err)
		}
		if err := os.Chmod(p, mode); err != nil {
			return fmt.Errorf("chmod: %w", err)
		}
	}
	w := writer{}
	return w.write(filepath.Join(d.root, "misc", "zero-length"), nil, 0o600, baseTime)
}

// writer produces deterministic file contents from one random source.
type writer struct {
	rng     *rand.Rand
	buf     []byte
	line    []byte // the text line being generated
	pending []byte // the part of line not written yet
	seq     int64  // lines generated so far
}

func newWriter(rng *rand.Rand) *writer {
	return &writer{rng: rng, buf: make([]byte, 4*mib)}
}

// smallMode gives most small files 0644 and a few 0600 or 0755.
func (w *writer) smallMode() fs.FileMode {
	switch n := w.rng.IntN(20); {
	case n == 0:
		return 0o600
	case n == 1:
		return 0o755
	default:
		return 0o644
	}
}

// fill fills b with random bytes.
func (w *writer) fill(b []byte) {
	for len(b) >= 8 {
		binary.LittleEndian.PutUint64(b, w.rng.Uint64())
		b = b[8:]
	}
	for i := range b {
		b[i] = byte(w.rng.Uint32())
	}
}

// randomFile writes size incompressible bytes to path.
func (w *writer) randomFile(path string, size int64, mode fs.FileMode) error {
	return w.stream(path, mode, size, w.fill)
}

// textFile writes size bytes of generated log lines to path.
func (w *writer) textFile(path string, size int64) error {
	return w.stream(path, 0o644, size, w.fillText)
}

// stream writes size bytes produced chunk by chunk by produce.
func (w *writer) stream(path string, mode fs.FileMode, size int64, produce func([]byte)) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return fmt.Errorf("create file: %w", err)
	}
	for left := size; left > 0; {
		chunk := w.buf[:min(left, int64(len(w.buf)))]
		produce(chunk)
		if _, err := f.Write(chunk); err != nil {
			f.Close()
			return fmt.Errorf("write %s: %w", path, err)
		}
		left -= int64(len(chunk))
	}
	return finish(f, mode, baseTime)
}

// write writes data to path in one go.
func (w *writer) write(path string, data []byte, mode fs.FileMode, mtime time.Time) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return fmt.Errorf("create file: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return finish(f, mode, mtime)
}

// finish sets the exact mode (ignoring the umask) and the modification time, and closes f.
func finish(f *os.File, mode fs.FileMode, mtime time.Time) error {
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("chmod %s: %w", f.Name(), err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", f.Name(), err)
	}
	if err := os.Chtimes(f.Name(), mtime, mtime); err != nil {
		return fmt.Errorf("set times of %s: %w", f.Name(), err)
	}
	return nil
}

// scan counts the regular files, directories (the root excluded), symlinks and bytes below root.
func scan(root string) (treeStats, error) {
	var s treeStats
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch {
		case p == root:
		case e.IsDir():
			s.dirs++
		case e.Type()&fs.ModeSymlink != 0:
			s.symlinks++
		case e.Type().IsRegular():
			info, err := e.Info()
			if err != nil {
				return err
			}
			s.files++
			s.bytes += info.Size()
		}
		return nil
	})
	if err != nil {
		return s, fmt.Errorf("scan %s: %w", root, err)
	}
	return s, nil
}

// warm reads every regular file below root once, so that every tool starts with a warm page cache.
func warm(root string) (int64, error) {
	var total int64
	buf := make([]byte, mib)
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil || !e.Type().IsRegular() {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		for {
			n, err := f.Read(buf)
			total += int64(n)
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
		}
	})
	if err != nil {
		return total, fmt.Errorf("read %s: %w", root, err)
	}
	return total, nil
}
