package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// entry is what verification compares for one path, besides a regular file's contents.
type entry struct {
	mode fs.FileMode // type and permission bits
	size int64       // regular files only
	link string      // symlink target
}

func (e entry) String() string {
	switch {
	case e.mode&fs.ModeSymlink != 0:
		return fmt.Sprintf("symlink -> %q", e.link)
	case e.mode.IsDir():
		return fmt.Sprintf("dir %v", e.mode)
	default:
		return fmt.Sprintf("file %v, %d bytes", e.mode, e.size)
	}
}

// listTree returns every entry below root (root itself excluded) by slash-separated relative path.
func listTree(root string) (map[string]entry, error) {
	entries := map[string]entry{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		e := entry{mode: info.Mode()}
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			if e.link, err = os.Readlink(p); err != nil {
				return err
			}
			e.mode = fs.ModeSymlink // symlink permissions mean nothing on Linux
		case info.Mode().IsRegular():
			e.size = info.Size()
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		entries[filepath.ToSlash(rel)] = e
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", root, err)
	}
	return entries, nil
}

// verifyTree fails unless the tree at restored equals the tree at source: the same paths, types,
// modes, sizes, symlink targets and file contents.
func verifyTree(source, restored string) error {
	want, err := listTree(source)
	if err != nil {
		return err
	}
	got, err := listTree(restored)
	if err != nil {
		return err
	}
	var problems []string
	cmp := comparer{a: make([]byte, 256*kib), b: make([]byte, 256*kib)}
	for _, rel := range slices.Sorted(maps.Keys(want)) {
		w, ok := got[rel]
		switch {
		case !ok:
			problems = append(problems, "missing: "+rel)
		case w != want[rel]:
			problems = append(problems, fmt.Sprintf("differs: %s: want %v, got %v", rel, want[rel], w))
		case w.mode.IsRegular():
			if err := cmp.same(filepath.Join(source, rel), filepath.Join(restored, rel)); err != nil {
				problems = append(problems, fmt.Sprintf("contents differ: %s: %v", rel, err))
			}
		}
	}
	for _, rel := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[rel]; !ok {
			problems = append(problems, "unexpected: "+rel)
		}
	}
	if len(problems) > 0 {
		shown := problems[:min(len(problems), 20)]
		return fmt.Errorf("restored tree %s differs from %s in %d entries:\n  %s",
			restored, source, len(problems), strings.Join(shown, "\n  "))
	}
	return nil
}

// comparer compares files byte by byte with two reusable buffers.
type comparer struct{ a, b []byte }

// same fails unless the files at a and b have the same contents.
func (c comparer) same(a, b string) error {
	fa, err := os.Open(a)
	if err != nil {
		return err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return err
	}
	defer fb.Close()
	bufA, bufB := c.a, c.b
	for off := int64(0); ; {
		na, errA := io.ReadFull(fa, bufA)
		nb, errB := io.ReadFull(fb, bufB)
		if !bytes.Equal(bufA[:na], bufB[:nb]) {
			return fmt.Errorf("first difference within bytes %d–%d", off, off+int64(max(na, nb)))
		}
		off += int64(na)
		endA := errors.Is(errA, io.EOF) || errors.Is(errA, io.ErrUnexpectedEOF)
		endB := errors.Is(errB, io.EOF) || errors.Is(errB, io.ErrUnexpectedEOF)
		switch {
		case endA && endB:
			return nil
		case errA != nil && !endA:
			return errA
		case errB != nil && !endB:
			return errB
		case endA != endB:
			return fmt.Errorf("lengths differ after %d bytes", off)
		}
	}
}
