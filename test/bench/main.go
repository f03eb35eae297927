package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/ferry-backup/ferry/internal/repository"
)

// The suites: compare (make bench) and scale (make bench-scale).
const (
	suiteCompare = "compare"
	suiteScale   = "scale"
)

// The contenders.
const (
	toolFerry = "ferry"
	// toolKopia is the kopia CLI with its defaults; toolKopiaBLAKE3 with Ferry's hash, so that
	// the tool and the setting are told apart.
	toolKopia       = "kopia"
	toolKopiaBLAKE3 = "kopia-blake3"
	// toolRestic is restic with its defaults (compression auto); toolResticNoComp with
	// --compression off, as Ferry and kopia store data.
	toolRestic       = "restic"
	toolResticNoComp = "restic-nocomp"
	// toolTar extracts a tar archive of the same tree: restores only.
	toolTar = "tar"
	// toolFerryBase is Ferry run by another build of this program (-baseline): how a change
	// to Ferry costs, in the same rounds.
	toolFerryBase = "ferry-base"
)

// ferryHash is the content hash of the repositories Ferry creates.
const ferryHash = repository.HashBLAKE3

var (
	allTools     = []string{toolFerry, toolFerryBase, toolKopia, toolKopiaBLAKE3, toolRestic, toolResticNoComp, toolTar}
	defaultTools = map[string][]string{
		suiteCompare: {toolFerry, toolKopia, toolKopiaBLAKE3, toolRestic, toolResticNoComp, toolTar},
		suiteScale:   {toolFerry, toolKopia, toolTar},
	}
)

// options configure a benchmark run, or (with ferryOp.op set) one of Ferry's child operations.
type options struct {
	suite    string
	scale    string
	rounds   int
	tools    []string
	factor   float64
	shapes   []string
	baseline string
	dir      string
	keep     bool
	parallel int
	kopia    string
	restic   string
	// memoryMiB is the memory cgroup limit of every measured process (0: none).
	memoryMiB int64
	ferryOp   ferryOp
}

// hiddenFlags are the child-process flags, left out of the usage text.
var hiddenFlags = []string{"ferry-op", "repo", "workdir", "source", "target", "snapshot", "cpuprofile", "memprofile"}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	o := options{suite: suiteCompare, scale: "full", rounds: 3, factor: 0.01}
	var tools, shapes string
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.suite, "suite", o.suite, "compare (one mixed dataset, every tool) or scale (many small files, one large file, against the kopia CLI)")
	fs.StringVar(&o.scale, "scale", o.scale, "compare suite's dataset size: full (≈2 GiB, 100k files) or small (≈115 MiB)")
	fs.IntVar(&o.rounds, "rounds", o.rounds, "interleaved rounds: each round rotates the tools' order and starts with fresh repositories")
	fs.StringVar(&tools, "tools", "", "comma-separated contenders, ferry first (default: the suite's; any of "+strings.Join(allTools, ",")+")")
	fs.Float64Var(&o.factor, "factor", o.factor, "scale suite's size: 1 = the full shapes (2M files), 0.01 = a hundredth")
	fs.StringVar(&shapes, "shapes", strings.Join(shapeNames(), ","), "scale suite's comma-separated shapes")
	fs.StringVar(&o.baseline, "baseline", "", "another build of this program (e.g. of the previous revision): its Ferry runs as ferry-base, second in the first round")
	fs.StringVar(&o.dir, "dir", "", "work directory (default: a new directory under $TMPDIR)")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory (dataset, repositories, restores)")
	fs.IntVar(&o.parallel, "parallel", 0, "Ferry's upload and restore parallelism; 0 means Ferry's default")
	fs.StringVar(&o.kopia, "kopia", "", "kopia binary (default: the pinned build of hack/install-tool.sh)")
	fs.StringVar(&o.restic, "restic", "", "restic binary (default: restic on PATH, else hack/install-restic.sh)")
	fs.Int64Var(&o.memoryMiB, "memory-limit", 0, "run every measured process in a memory cgroup of this many MiB, page cache included, as in a container (root; 0: no limit)")
	fs.StringVar(&o.ferryOp.op, "ferry-op", "", "internal: run one Ferry operation (init, backup, restore)")
	fs.StringVar(&o.ferryOp.repo, "repo", "", "internal: repository root")
	fs.StringVar(&o.ferryOp.workDir, "workdir", "", "internal: Kopia config and cache directory")
	fs.StringVar(&o.ferryOp.source, "source", "", "internal: directory to back up")
	fs.StringVar(&o.ferryOp.target, "target", "", "internal: directory to restore into")
	fs.StringVar(&o.ferryOp.snapshot, "snapshot", "", "internal: snapshot to restore")
	fs.StringVar(&o.ferryOp.cpuProfile, "cpuprofile", "", "internal: write a CPU profile of the operation to this file")
	fs.StringVar(&o.ferryOp.memProfile, "memprofile", "", "internal: write a heap profile (allocations) of the operation to this file")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: go run ./test/bench [-suite compare|scale] [-scale full|small] [-factor F] [-rounds N] [-tools LIST] [-dir DIR] [-keep] [-parallel N]")
		fs.VisitAll(func(f *flag.Flag) {
			if !slices.Contains(hiddenFlags, f.Name) {
				fmt.Fprintf(stderr, "  -%s\n    \t%s\n", f.Name, f.Usage)
			}
		})
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	o.ferryOp.parallel = o.parallel
	o.tools = defaultTools[o.suite]
	if tools != "" {
		o.tools = strings.Split(tools, ",")
	}
	if o.baseline != "" && !slices.Contains(o.tools, toolFerryBase) {
		o.tools = slices.Insert(slices.Clone(o.tools), 1, toolFerryBase)
	}
	o.shapes = strings.Split(shapes, ",")
	return o, o.validate()
}

func (o options) validate() error {
	if o.ferryOp.op != "" {
		return o.ferryOp.validate()
	}
	if o.suite != suiteCompare && o.suite != suiteScale {
		return fmt.Errorf("unknown -suite %q (want %s or %s)", o.suite, suiteCompare, suiteScale)
	}
	if _, ok := specs[o.scale]; !ok {
		return fmt.Errorf("unknown -scale %q (want full or small)", o.scale)
	}
	if o.parallel < 0 {
		return errors.New("-parallel must not be negative")
	}
	if o.memoryMiB < 0 {
		return errors.New("-memory-limit must not be negative")
	}
	if o.rounds < 1 {
		return errors.New("-rounds must be at least 1")
	}
	if len(o.tools) == 0 || o.tools[0] != toolFerry {
		return fmt.Errorf("-tools %q must start with %s: every ratio is against Ferry", strings.Join(o.tools, ","), toolFerry)
	}
	for i, t := range o.tools {
		if !slices.Contains(allTools, t) || slices.Index(o.tools, t) != i {
			return fmt.Errorf("-tools: unknown or repeated tool %q (want some of %s)", t, strings.Join(allTools, ","))
		}
	}
	if slices.Contains(o.tools, toolFerryBase) && o.baseline == "" {
		return fmt.Errorf("%s needs -baseline", toolFerryBase)
	}
	if o.factor <= 0 || o.factor > 10 {
		return fmt.Errorf("-factor %g out of range (0, 10]", o.factor)
	}
	for _, s := range o.shapes {
		if _, ok := shapes[s]; !ok {
			return fmt.Errorf("unknown shape %q (want some of %s)", s, strings.Join(shapeNames(), ","))
		}
	}
	return nil
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	o, err := parseFlags(os.Args[1:], os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		stop()
		os.Exit(0)
	case err != nil:
	case o.ferryOp.op != "":
		err = runFerryOp(ctx, o.ferryOp)
	default:
		err = runBench(ctx, o, os.Stdout)
	}
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: FAILED:", strings.TrimSpace(err.Error()))
		os.Exit(1)
	}
}
