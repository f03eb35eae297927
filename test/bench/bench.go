package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"
)

// marker marks a directory as a benchmark work directory, which a later run may empty.
const marker = ".ferry-bench"

// bench runs the operations of every contender in interleaved rounds.
type bench struct {
	out      io.Writer
	work     string
	data     string
	keep     bool
	rounds   int
	parallel int
	// tools are the contenders' names, in the first round's order; bins holds the binaries.
	tools []string
	bins  binaries
	// sp is the compare suite's dataset; shapes and factor are the scale suite's.
	sp     spec
	shapes []string
	factor float64
	rs     *runResults
	// unsettled is set once settle could not drop the page cache (and said so).
	unsettled bool
}

// binaries are the programs the contenders run.
type binaries struct {
	self, baseline, kopia, restic string
}

// runBench prepares the tools and runs the suite o asks for.
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
	b := &bench{out: out, work: work, data: filepath.Join(work, "data"), keep: o.keep, rounds: o.rounds,
		parallel: o.parallel, tools: o.tools, sp: specs[o.scale], shapes: o.shapes, factor: o.factor}
	b.rs = &runResults{suite: o.suite, scale: o.scale, factor: o.factor, rounds: o.rounds, tools: o.tools, memoryMiB: o.memoryMiB}
	if o.suite == suiteScale {
		fmt.Fprintf(out, "bench: scale suite, factor %g, %d rounds, work directory %s\n", o.factor, o.rounds, work)
	} else {
		fmt.Fprintf(out, "bench: scale %s, %d rounds, work directory %s\n", o.scale, o.rounds, work)
	}
	if b.bins, err = b.setUp(ctx, o); err != nil {
		return err
	}
	if o.memoryMiB > 0 {
		g, err := newMemoryCgroup(o.memoryMiB << 20)
		if err != nil {
			return err
		}
		defer g.remove()
		memoryLimit = g
		defer func() { memoryLimit = nil }()
		fmt.Fprintf(out, "memory limit: every measured process runs in %s, limited to %d MiB\n", g.dir, o.memoryMiB)
	}
	if o.suite == suiteScale {
		err = b.runScale(ctx)
	} else {
		err = b.runCompare(ctx)
	}
	if err != nil {
		return err
	}
	b.rs.print(out)
	if o.suite == suiteCompare {
		b.rs.printTargets(out)
	}
	line, err := b.rs.summary()
	if err != nil {
		return err
	}
	fmt.Fprintln(out, line)
	return nil
}

// setUp finds the binaries the chosen tools need.
func (b *bench) setUp(ctx context.Context, o options) (binaries, error) {
	var bins binaries
	root, err := findModuleRoot()
	if err != nil {
		return bins, err
	}
	if bins.self, err = os.Executable(); err != nil {
		return bins, fmt.Errorf("find the benchmark's own executable: %w", err)
	}
	bins.baseline = o.baseline
	if slices.ContainsFunc(b.tools, func(t string) bool { return t == toolKopia || t == toolKopiaBLAKE3 }) {
		if bins.kopia, err = findKopia(ctx, o.kopia, root); err != nil {
			return bins, err
		}
	}
	if slices.ContainsFunc(b.tools, func(t string) bool { return t == toolRestic || t == toolResticNoComp }) {
		if bins.restic, err = findRestic(ctx, o.restic, root); err != nil {
			return bins, err
		}
	}
	fmt.Fprintf(b.out, "tools: %v; ferry = this binary, -parallel %d; ferry-base %s; kopia %s; restic %s; GOMAXPROCS here %d\n",
		b.tools, o.parallel, bins.baseline, bins.kopia, bins.restic, gomaxprocs())
	return bins, nil
}

// contenders makes fresh contenders (no repository, no snapshot) for one round, in the order
// of the round: the first round's order rotated by round, so every tool goes first once in
// len(tools) rounds.
func (b *bench) contenders(round int) []contender {
	order := rotate(b.tools, round)
	cs := make([]contender, 0, len(order))
	for _, name := range order {
		dir := filepath.Join(b.work, name)
		switch name {
		case toolFerry:
			cs = append(cs, newFerry(&ferryTool{self: b.bins.self, dir: dir, source: b.data, parallel: b.parallel}))
		case toolFerryBase:
			c := newFerry(&ferryTool{self: b.bins.baseline, dir: dir, source: b.data, parallel: b.parallel})
			c.name = name
			cs = append(cs, c)
		case toolKopia:
			cs = append(cs, newKopia(name, b.bins.kopia, dir, b.data, ""))
		case toolKopiaBLAKE3:
			cs = append(cs, newKopia(name, b.bins.kopia, dir, b.data, ferryHash))
		case toolRestic:
			cs = append(cs, newRestic(name, b.bins.restic, dir, b.data, false))
		case toolResticNoComp:
			cs = append(cs, newRestic(name, b.bins.restic, dir, b.data, true))
		case toolTar:
			cs = append(cs, newUntar(dir, b.data))
		}
	}
	return cs
}

// rotate returns s rotated left by n.
func rotate(s []string, n int) []string {
	if len(s) == 0 {
		return nil
	}
	n %= len(s)
	return append(slices.Clone(s[n:]), s[:n]...)
}

// runCompare runs the compare suite: in every round a freshly generated dataset, fresh
// repositories, the initial, no-change and 1%-change backups and a verified restore.
func (b *bench) runCompare(ctx context.Context) error {
	for round := range b.rounds {
		if err := os.RemoveAll(b.data); err != nil {
			return fmt.Errorf("remove the dataset: %w", err)
		}
		ds, stats, err := b.prepareData(func(root string) (*dataset, error) { return generate(root, b.sp) })
		if err != nil {
			return err
		}
		cs, err := b.startRound(ctx, round)
		if err != nil {
			return err
		}
		if err := b.backups(ctx, cs, round, "", opBackupInitial, stats); err != nil {
			return err
		}
		if err := b.backups(ctx, cs, round, "", opBackupNoChange, stats); err != nil {
			return err
		}
		change, err := ds.applyChange(stats.bytes)
		if err != nil {
			return fmt.Errorf("change the dataset: %w", err)
		}
		if stats, err = scan(b.data); err != nil {
			return err
		}
		fmt.Fprintf(b.out, "change: %s (%.2f%% of the bytes), the same for every tool\n",
			change, 100*float64(change.total())/float64(stats.bytes))
		if err := b.backups(ctx, cs, round, "", opBackupChanged, stats); err != nil {
			return err
		}
		if err := b.restores(ctx, cs, round, "", stats); err != nil {
			return err
		}
	}
	return nil
}

// startRound removes the previous round's repositories and creates new ones (untimed).
func (b *bench) startRound(ctx context.Context, round int) ([]contender, error) {
	cs := b.contenders(round)
	names := make([]string, len(cs))
	for i, c := range cs {
		names[i] = c.name
		if err := os.RemoveAll(c.dir); err != nil {
			return nil, fmt.Errorf("remove %s: %w", c.dir, err)
		}
		if err := os.MkdirAll(c.dir, 0o755); err != nil {
			return nil, fmt.Errorf("create %s: %w", c.dir, err)
		}
		if err := c.tool.initRepo(ctx); err != nil {
			return nil, fmt.Errorf("%s: create repository: %w", c.name, err)
		}
	}
	fmt.Fprintf(b.out, "\n-- round %d of %d, order %v --\n", round+1, b.rounds, names)
	return cs, nil
}

// prepareData writes a dataset with gen and reads it once, untimed, so that every tool sees a
// warm cache.
func (b *bench) prepareData(gen func(root string) (*dataset, error)) (*dataset, treeStats, error) {
	start := time.Now()
	ds, err := gen(b.data)
	if err != nil {
		return nil, treeStats{}, fmt.Errorf("generate the dataset: %w", err)
	}
	stats, err := scan(b.data)
	if err != nil {
		return nil, stats, err
	}
	genTime := time.Since(start)
	start = time.Now()
	n, err := warm(b.data)
	if err != nil {
		return nil, stats, err
	}
	fmt.Fprintf(b.out, "dataset: %s (generated in %.1f s, fixed seed; read once, untimed, in %.1f s: %.1f MiB)\n",
		stats, genTime.Seconds(), time.Since(start).Seconds(), float64(n)/mib)
	return ds, stats, nil
}

// backups runs one backup of each contender (restore-only ones excluded) and measures the
// bytes it added to its repository.
func (b *bench) backups(ctx context.Context, cs []contender, round int, shape, op string, stats treeStats) error {
	for _, c := range cs {
		if c.restoreOnly {
			continue
		}
		before, err := diskUsage(c.repo)
		if err != nil {
			return err
		}
		m, err := c.tool.backup(ctx)
		if err != nil {
			return fmt.Errorf("%s: %s: %w", c.name, op, err)
		}
		after, err := diskUsage(c.repo)
		if err != nil {
			return err
		}
		fmt.Fprintf(b.out, "  %-14s %-17s %7.2f s %7.1f MiB RSS %7.2f CPU s\n", c.name, op, m.wall.Seconds(),
			float64(m.maxRSSKiB)/kib, m.cpu.Seconds())
		b.rs.add(shape, op, stats, c.name, round, m, after-before)
	}
	return nil
}

// restores restores each contender's latest snapshot into an empty directory and verifies it.
// A restore-only contender (tar) first writes its archive of the source, untimed.
func (b *bench) restores(ctx context.Context, cs []contender, round int, shape string, stats treeStats) error {
	for _, c := range cs {
		if c.restoreOnly {
			if _, err := c.tool.backup(ctx); err != nil {
				return fmt.Errorf("%s: archive the source: %w", c.name, err)
			}
		}
	}
	for _, c := range cs {
		target := filepath.Join(b.work, "restore-"+c.name)
		if err := os.RemoveAll(target); err != nil {
			return fmt.Errorf("remove restore directory: %w", err)
		}
		if err := os.Mkdir(target, 0o755); err != nil {
			return fmt.Errorf("create restore directory: %w", err)
		}
		if err := b.settle(c); err != nil {
			return err
		}
		root, m, err := c.tool.restore(ctx, target)
		if err != nil {
			return fmt.Errorf("%s: restore: %w", c.name, err)
		}
		// A restore is done when its data is on disk: Ferry flushes before it reports success,
		// the others do not, so each restore's time includes a sync after it (for Ferry, next
		// to nothing is left to write).
		flushStart := time.Now()
		syscall.Sync()
		flush := time.Since(flushStart)
		m.wall += flush
		fmt.Fprintf(b.out, "  %-14s %-17s %7.2f s %7.1f MiB RSS %7.2f CPU s, %.2f s of it to flush", c.name, opRestoreTree, m.wall.Seconds(),
			float64(m.maxRSSKiB)/kib, m.cpu.Seconds(), flush.Seconds())
		if err := verifyTree(b.data, root); err != nil {
			return fmt.Errorf("%s: restore verification: %w", c.name, err)
		}
		fmt.Fprintln(b.out, ", verified")
		if !b.keep {
			if err := os.RemoveAll(target); err != nil {
				return fmt.Errorf("remove restore directory: %w", err)
			}
		}
		b.rs.add(shape, opRestoreTree, stats, c.name, round, m, -1)
	}
	return nil
}

// settle puts every restore on the same footing. On ext4 without a journal (the root file
// system of this machine and of the 16-core one) the inode allocator skips every inode deleted
// in the last minute whose inode table block is still cached, looking each up for each new
// file: right after the previous contender's restored tree was deleted, the next restore spent
// most of its time in the kernel (tar -x of 20,000 small files: 0.6 s of system CPU on a settled
// file system, 16 s right after a deletion; docs/performance.md). So before each timed restore
// everything is written back (sync), the page cache is dropped (root only), and the
// contender's repository (or archive) is read back in, untimed, as the dataset is before the
// backups.
func (b *bench) settle(c contender) error {
	syscall.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("1"), 0o644); err != nil {
		if !b.unsettled {
			b.unsettled = true
			fmt.Fprintf(b.out, "warning: cannot drop the page cache (%v): on ext4 without a journal, a restore right after a deletion of many files is slowed by the kernel\n", err)
		}
		return nil
	}
	if _, err := warm(c.dir); err != nil {
		return fmt.Errorf("%s: read the repository back in: %w", c.name, err)
	}
	return nil
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
