package main

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
)

// shape is one dataset of the scale suite at full size (factor 1); every count and size is
// multiplied by the factor.
type shape struct {
	about string
	files int
	dirs  int   // directories the files are spread over (round-robin)
	size  int64 // bytes per file
}

// shapes are the scale suite's datasets: the small-file shapes of Velero's file-system backup
// performance guide and one large file.
var shapes = map[string]shape{
	"235k-100B": {about: "235,298 files of 100 B in 137,257 directories", files: 235_298, dirs: 137_257, size: 100},
	"2M-100B":   {about: "2,097,152 files of 100 B, 1,000 per directory", files: 2_097_152, dirs: 2_097, size: 100},
	"2M-empty":  {about: "2,097,152 empty files, 1,000 per directory", files: 2_097_152, dirs: 2_097, size: 0},
	"large":     {about: "one file of 10 GiB", files: 1, dirs: 1, size: 10 << 30},
}

// shapeOrder is the order the suite runs the shapes in.
var shapeOrder = []string{"235k-100B", "2M-100B", "2M-empty", "large"}

func shapeNames() []string { return slices.Clone(shapeOrder) }

// scaled returns sh with its counts (file-count shapes) or its size (one-file shapes) multiplied
// by factor, at least one of each.
func (sh shape) scaled(factor float64) shape {
	scale := func(n float64) float64 { return max(1, math.Round(n*factor)) }
	if sh.files == 1 {
		sh.size = int64(scale(float64(sh.size)))
		return sh
	}
	sh.files, sh.dirs = int(scale(float64(sh.files))), int(scale(float64(sh.dirs)))
	return sh
}

// dirPath names directory i of n: two levels, at most 512 entries in each.
func dirPath(i int) string {
	return filepath.Join(fmt.Sprintf("t%04d", i/512), fmt.Sprintf("d%03d", i%512))
}

// generateShape writes sh below root, which must not exist yet: file i in directory i mod
// sh.dirs, random contents from a fixed seed, fixed modification times.
func generateShape(root string, sh shape) error {
	w := newWriter(rand.New(rand.NewPCG(dataSeed1, dataSeed2)))
	for d := range sh.dirs {
		if err := os.MkdirAll(filepath.Join(root, dirPath(d)), 0o755); err != nil {
			return fmt.Errorf("create directory: %w", err)
		}
	}
	buf := make([]byte, min(sh.size, 4*kib))
	for i := range sh.files {
		p := filepath.Join(root, dirPath(i%sh.dirs), fmt.Sprintf("f%07d", i))
		if sh.size > int64(len(buf)) {
			if err := w.randomFile(p, sh.size, 0o644); err != nil {
				return err
			}
			continue
		}
		w.fill(buf)
		if err := writeSmall(p, buf); err != nil {
			return err
		}
	}
	for d := range sh.dirs { // creating files moved the directories' times
		if err := os.Chtimes(filepath.Join(root, dirPath(d)), baseTime, baseTime); err != nil {
			return fmt.Errorf("set times: %w", err)
		}
	}
	return nil
}

// writeSmall writes a small file without the extra chmod of writer.write (the umask leaves 0644).
func writeSmall(p string, data []byte) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("create file: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", p, err)
	}
	return os.Chtimes(p, baseTime, baseTime)
}

// runScale runs the scale suite: for each shape, generated once, in every round fresh
// repositories, a backup, a no-change backup and a verified restore.
func (b *bench) runScale(ctx context.Context) error {
	for _, name := range b.shapes {
		sh := shapes[name].scaled(b.factor)
		if err := os.RemoveAll(b.data); err != nil {
			return fmt.Errorf("remove the dataset: %w", err)
		}
		fmt.Fprintf(b.out, "\n==== shape %s: %s, × %g ====\n", name, shapes[name].about, b.factor)
		_, stats, err := b.prepareData(func(root string) (*dataset, error) { return nil, generateShape(root, sh) })
		if err != nil {
			return err
		}
		for round := range b.rounds {
			cs, err := b.startRound(ctx, round)
			if err != nil {
				return err
			}
			if err := b.backups(ctx, cs, round, name, opBackupInitial, stats); err != nil {
				return err
			}
			if err := b.backups(ctx, cs, round, name, opBackupNoChange, stats); err != nil {
				return err
			}
			if err := b.restores(ctx, cs, round, name, stats); err != nil {
				return err
			}
		}
		for _, c := range b.contenders(0) {
			if err := os.RemoveAll(c.dir); err != nil {
				return fmt.Errorf("remove %s: %w", c.dir, err)
			}
		}
	}
	return nil
}
