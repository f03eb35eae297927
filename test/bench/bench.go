package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// marker marks a directory as a benchmark work directory, which a later run may empty.
const marker = ".ferry-bench"

// bench runs the operations of every contender on one dataset.
type bench struct {
	out        io.Writer
	work       string
	data       string
	keep       bool
	contenders []contender
}

// runBench generates the dataset, runs every operation of every tool and prints the results.
func runBench(ctx context.Context, o options, out io.Writer) (err error) {
	work, err := prepareWorkDir(o.dir)
	if err != nil {
		return err
	}
	defer func() {
		if o.keep {
			fmt.Fprintln(out, "work directory kept:", work)
			return
		}
		err = errors.Join(err, emptyDir(work, o.dir == ""))
	}()
	b := &bench{out: out, work: work, data: filepath.Join(work, "data"), keep: o.keep}
	fmt.Fprintf(out, "bench: scale %s, work directory %s\n", o.scale, work)
	if b.contenders, err = b.setUp(ctx, o); err != nil {
		return err
	}
	ds, stats, err := b.prepareData(specs[o.scale])
	if err != nil {
		return err
	}
	for _, c := range b.contenders {
		if err := c.tool.initRepo(ctx); err != nil {
			return fmt.Errorf("%s: create repository: %w", c.name, err)
		}
	}
	rs, err := b.runAll(ctx, ds, stats)
	if err != nil {
		return err
	}
	rs.printTargets(out)
	fmt.Fprintln(out, rs.summary())
	return nil
}

// setUp finds the three tools' binaries.
func (b *bench) setUp(ctx context.Context, o options) ([]contender, error) {
	root, err := findModuleRoot()
	if err != nil {
		return nil, err
	}
	kopia, err := findKopia(ctx, o.kopia, root)
	if err != nil {
		return nil, err
	}
	restic, err := findRestic(ctx, o.restic, root)
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the benchmark's own executable: %w", err)
	}
	ferry := &ferryTool{self: self, dir: filepath.Join(b.work, "ferry"), source: b.data, parallel: o.parallel, notes: b.out}
	fmt.Fprintf(b.out, "tools: ferry (this binary, -parallel %d), kopia %s, restic %s\n", o.parallel, kopia, restic)
	return []contender{
		newFerry(ferry),
		newKopia(kopia, filepath.Join(b.work, "kopia"), b.data),
		newRestic(restic, filepath.Join(b.work, "restic"), b.data),
	}, nil
}

// prepareData writes the dataset and reads it once, untimed, so that every tool sees a warm
// cache.
func (b *bench) prepareData(sp spec) (*dataset, treeStats, error) {
	start := time.Now()
	ds, err := generate(b.data, sp)
	if err != nil {
		return nil, treeStats{}, fmt.Errorf("generate the dataset: %w", err)
	}
	stats, err := scan(b.data)
	if err != nil {
		return nil, stats, err
	}
	fmt.Fprintf(b.out, "dataset: %s (generated in %.1f s, fixed seed)\n", stats, time.Since(start).Seconds())
	start = time.Now()
	n, err := warm(b.data)
	if err != nil {
		return nil, stats, err
	}
	fmt.Fprintf(b.out, "warm cache: read %.1f MiB once in %.1f s, untimed; the page cache is not dropped, "+
		"so every tool runs with the dataset in memory\n", float64(n)/mib, time.Since(start).Seconds())
	return ds, stats, nil
}

// runAll runs the initial and no-change backups of every tool, applies the 1% change, then runs
// every tool's 1%-change backup and restore.
func (b *bench) runAll(ctx context.Context, ds *dataset, stats treeStats) (runResults, error) {
	var rs runResults
	var err error
	if rs.initial, err = b.backups(ctx, "initial backup", stats); err != nil {
		return rs, err
	}
	if rs.noChange, err = b.backups(ctx, "no-change backup", stats); err != nil {
		return rs, err
	}
	change, err := ds.applyChange(stats.bytes)
	if err != nil {
		return rs, fmt.Errorf("change the dataset: %w", err)
	}
	if stats, err = scan(b.data); err != nil {
		return rs, err
	}
	fmt.Fprintf(b.out, "\nchange: %s (%.2f%% of the bytes), the same for every tool\n",
		change, 100*float64(change.total())/float64(stats.bytes))
	if rs.changed, err = b.backups(ctx, "1%-change backup", stats); err != nil {
		return rs, err
	}
	if rs.restore, err = b.restores(ctx, stats); err != nil {
		return rs, err
	}
	return rs, nil
}

// backups runs one backup of each tool and measures the bytes it added to its repository.
func (b *bench) backups(ctx context.Context, title string, stats treeStats) (*opReport, error) {
	r := &opReport{title: title, data: stats}
	for _, c := range b.contenders {
		before, err := diskUsage(c.repo)
		if err != nil {
			return nil, err
		}
		m, err := c.tool.backup(ctx)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", c.name, title, err)
		}
		after, err := diskUsage(c.repo)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(b.out, "  %s %s: %.2f s\n", c.name, title, m.wall.Seconds())
		r.results = append(r.results, result{tool: c.name, m: m, repoAdded: after - before})
	}
	r.print(b.out)
	return r, nil
}

// restores restores each tool's latest snapshot into an empty directory and verifies it.
func (b *bench) restores(ctx context.Context, stats treeStats) (*opReport, error) {
	r := &opReport{title: "restore of the latest snapshot", data: stats}
	for _, c := range b.contenders {
		target := filepath.Join(b.work, "restore-"+c.name)
		if err := os.Mkdir(target, 0o755); err != nil {
			return nil, fmt.Errorf("create restore directory: %w", err)
		}
		root, m, err := c.tool.restore(ctx, target)
		if err != nil {
			return nil, fmt.Errorf("%s: restore: %w", c.name, err)
		}
		fmt.Fprintf(b.out, "  %s restore: %.2f s\n", c.name, m.wall.Seconds())
		if err := verifyTree(b.data, root); err != nil {
			return nil, fmt.Errorf("%s: restore verification: %w", c.name, err)
		}
		fmt.Fprintf(b.out, "  %s restore verified: equals the source byte for byte (contents, sizes, modes, symlinks)\n", c.name)
		if !b.keep {
			if err := os.RemoveAll(target); err != nil {
				return nil, fmt.Errorf("remove restore directory: %w", err)
			}
		}
		r.results = append(r.results, result{tool: c.name, m: m, repoAdded: -1})
	}
	r.print(b.out)
	return r, nil
}

// prepareWorkDir returns the absolute work directory: dir, created if missing, or a new
// temporary one. An existing dir must be empty or an earlier run's work directory, which is
// emptied.
func prepareWorkDir(dir string) (string, error) {
	if dir == "" {
		d, err := os.MkdirTemp("", "ferry-bench-")
		if err != nil {
			return "", fmt.Errorf("create work directory: %w", err)
		}
		return filepath.EvalSymlinks(d)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("work directory: %w", err)
	}
	entries, err := os.ReadDir(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(abs, 0o755); err != nil {
			return "", fmt.Errorf("create work directory: %w", err)
		}
	case err != nil:
		return "", fmt.Errorf("work directory: %w", err)
	case len(entries) > 0:
		if _, err := os.Stat(filepath.Join(abs, marker)); err != nil {
			return "", fmt.Errorf("work directory %s is neither empty nor an earlier benchmark's (no %s file)", abs, marker)
		}
		if err := emptyDir(abs, false); err != nil {
			return "", err
		}
	}
	if err := os.WriteFile(filepath.Join(abs, marker), nil, 0o644); err != nil {
		return "", fmt.Errorf("mark work directory: %w", err)
	}
	return filepath.EvalSymlinks(abs)
}

// emptyDir removes everything in dir, and dir itself when removeDir is set.
func emptyDir(dir string, removeDir bool) error {
	if removeDir {
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("remove work directory: %w", err)
		}
		return nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("empty work directory: %w", err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("empty work directory: %w", err)
		}
	}
	return nil
}
