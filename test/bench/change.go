package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
)

// changeReport says what applyChange did.
type changeReport struct {
	// rewritten small files were rewritten in place: same size and mode, new contents.
	rewritten      int
	rewrittenBytes int64
	// overwritten large files had a region of overwriteBytes/overwritten bytes overwritten.
	overwritten    int
	overwriteBytes int64
	// appendedBytes of log lines were appended to one text file.
	appendedBytes int64
	// added new small files; removed small files were deleted.
	added      int
	addedBytes int64
	removed    int
}

func (c changeReport) total() int64 {
	return c.rewrittenBytes + c.overwriteBytes + c.appendedBytes + c.addedBytes
}

func (c changeReport) String() string {
	return fmt.Sprintf("rewrote %d small files (%.1f MiB), overwrote %.1f MiB in %d large files, "+
		"appended %.1f MiB of text, added %d files (%.1f MiB), deleted %d files: %.1f MiB changed",
		c.rewritten, float64(c.rewrittenBytes)/mib, float64(c.overwriteBytes)/mib, c.overwritten,
		float64(c.appendedBytes)/mib, c.added, float64(c.addedBytes)/mib, c.removed, float64(c.total())/mib)
}

// applyChange modifies about 1/changeFactor of the dataset's bytes, the same way in every run:
// 40% by rewriting small files, 45% by overwriting a region of a few large files, 10% by appending
// to a text file and 5% as new files; it also deletes a few small files.
func (d *dataset) applyChange(totalBytes int64) (changeReport, error) {
	var rep changeReport
	budget := totalBytes / d.spec.changeFactor
	w := newWriter(rand.New(rand.NewPCG(changeSeed1, changeSeed2)))
	for _, i := range w.rng.Perm(len(d.small)) {
		if rep.rewrittenBytes >= budget*40/100 {
			break
		}
		f := d.small[i]
		if err := w.rewrite(filepath.Join(d.root, f.path), f.size); err != nil {
			return rep, err
		}
		rep.rewritten++
		rep.rewrittenBytes += f.size
	}
	if err := d.overwriteLarge(w, budget*45/100, &rep); err != nil {
		return rep, err
	}
	if err := d.appendText(w, budget*10/100, &rep); err != nil {
		return rep, err
	}
	if err := d.addAndRemove(w, budget*5/100, &rep); err != nil {
		return rep, err
	}
	return rep, nil
}

// rewrite replaces the contents of the file at path with size new random bytes, keeping its mode.
func (w *writer) rewrite(path string, size int64) error {
	info, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("stat: %w", err)
	}
	data := make([]byte, size)
	w.fill(data)
	return w.write(path, data, info.Mode().Perm(), changeTime)
}

// overwriteLarge overwrites a 4 KiB-aligned region at a random offset in up to three large files.
func (d *dataset) overwriteLarge(w *writer, budget int64, rep *changeReport) error {
	n := min(3, len(d.large))
	if n == 0 {
		return nil
	}
	region := min(budget/int64(n), d.spec.largeSize) &^ (4*kib - 1)
	for _, i := range w.rng.Perm(len(d.large))[:n] {
		off := w.rng.Int64N(d.spec.largeSize-region+1) &^ (4*kib - 1)
		data := make([]byte, region)
		w.fill(data)
		path := filepath.Join(d.root, d.large[i])
		if err := writeAt(path, data, off); err != nil {
			return err
		}
		rep.overwritten++
		rep.overwriteBytes += region
	}
	return nil
}

// appendText appends budget bytes of new log lines to one text file.
func (d *dataset) appendText(w *writer, budget int64, rep *changeReport) error {
	if len(d.text) == 0 {
		return nil
	}
	path := filepath.Join(d.root, d.text[w.rng.IntN(len(d.text))])
	w.seq = 1 << 40 // new lines, not a repetition of existing ones
	data := make([]byte, budget)
	w.fillText(data)
	info, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("stat: %w", err)
	}
	if err := writeAt(path, data, info.Size()); err != nil {
		return err
	}
	rep.appendedBytes += budget
	return nil
}

// addAndRemove adds new small files worth budget bytes in a new directory and deletes five.
func (d *dataset) addAndRemove(w *writer, budget int64, rep *changeReport) error {
	for i := 0; rep.addedBytes < budget; i++ {
		size := int64(1*kib + w.rng.IntN(15*kib+1))
		data := make([]byte, size)
		w.fill(data)
		path := filepath.Join(d.root, "small", "added", fmt.Sprintf("n%05d.bin", i))
		if err := w.write(path, data, 0o644, changeTime); err != nil {
			return err
		}
		rep.added++
		rep.addedBytes += size
	}
	for _, i := range w.rng.Perm(len(d.small))[:min(5, len(d.small))] {
		if err := os.Remove(filepath.Join(d.root, d.small[i].path)); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("delete: %w", err)
		}
		rep.removed++
	}
	return nil
}

// writeAt writes data at offset off of the existing file at path and sets its modification time.
func writeAt(path string, data []byte, off int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	if _, err := f.WriteAt(data, off); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	if err := os.Chtimes(path, changeTime, changeTime); err != nil {
		return fmt.Errorf("set times of %s: %w", path, err)
	}
	return nil
}
