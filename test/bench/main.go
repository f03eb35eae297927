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
)

// options configure a benchmark run, or (with ferryOp.op set) one of Ferry's child operations.
type options struct {
	scale    string
	dir      string
	keep     bool
	parallel int
	kopia    string
	restic   string
	ferryOp  ferryOp
}

// hiddenFlags are the child-process flags, left out of the usage text.
var hiddenFlags = []string{"ferry-op", "repo", "workdir", "source", "target", "snapshot"}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	o := options{scale: "full"}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.scale, "scale", o.scale, "dataset size: full (≈2 GiB, 100k files) or small (≈115 MiB)")
	fs.StringVar(&o.dir, "dir", "", "work directory (default: a new directory under $TMPDIR)")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory (dataset, repositories, restores)")
	fs.IntVar(&o.parallel, "parallel", 0, "Ferry's upload and restore parallelism; 0 means Ferry's default")
	fs.StringVar(&o.kopia, "kopia", "", "kopia binary (default: the pinned build of hack/install-tool.sh)")
	fs.StringVar(&o.restic, "restic", "", "restic binary (default: restic on PATH, else hack/install-restic.sh)")
	fs.StringVar(&o.ferryOp.op, "ferry-op", "", "internal: run one Ferry operation (init, backup, restore)")
	fs.StringVar(&o.ferryOp.repo, "repo", "", "internal: repository root")
	fs.StringVar(&o.ferryOp.workDir, "workdir", "", "internal: Kopia config and cache directory")
	fs.StringVar(&o.ferryOp.source, "source", "", "internal: directory to back up")
	fs.StringVar(&o.ferryOp.target, "target", "", "internal: directory to restore into")
	fs.StringVar(&o.ferryOp.snapshot, "snapshot", "", "internal: snapshot to restore")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: go run ./test/bench [-scale full|small] [-dir DIR] [-keep] [-parallel N]")
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
	return o, o.validate()
}

func (o options) validate() error {
	if o.ferryOp.op != "" {
		return o.ferryOp.validate()
	}
	if _, ok := specs[o.scale]; !ok {
		return fmt.Errorf("unknown -scale %q (want full or small)", o.scale)
	}
	if o.parallel < 0 {
		return errors.New("-parallel must not be negative")
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
