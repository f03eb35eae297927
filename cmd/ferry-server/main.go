// Command ferry-server validates storage locations, keeps backup repositories and turns Backups
// and Restores into node-agent work. Its subcommands are the commands of the Jobs it runs:
// `ferry-server maintain` (one repository maintenance) and `ferry-server verify` (one backup's
// verification); each reports its result and exits non-zero when it failed.
package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/spf13/pflag"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/ferry-backup/ferry/internal/memlimit"
	"github.com/ferry-backup/ferry/internal/server"
)

// options are a command's settings.
type options interface {
	AddFlags(*pflag.FlagSet)
	Validate() error
}

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "maintain", "verify":
			// A Job's limit is maintenanceJobResources (the server's own is applied with its manager).
			memlimit.Apply("/")
		}
		switch os.Args[1] {
		case "maintain":
			o := server.NewMaintainOptions()
			run("ferry-server maintain", &o, os.Args[2:], func(ctx context.Context, out io.Writer) error { return server.Maintain(ctx, o, out) })
			return
		case "verify":
			o := server.NewVerifyOptions()
			run("ferry-server verify", &o, os.Args[2:], func(ctx context.Context, out io.Writer) error { return server.Verify(ctx, o, out) })
			return
		}
	}
	o := server.NewOptions()
	run("ferry-server", &o, os.Args[1:], func(ctx context.Context, _ io.Writer) error { return server.Run(ctx, o) })
}

// run parses args into o (exit 2 when they are invalid), then runs the command until a signal
// (exit 1 when it fails).
func run(name string, o options, args []string, command func(context.Context, io.Writer) error) {
	fs := pflag.NewFlagSet(name, pflag.ExitOnError)
	o.AddFlags(fs)
	_ = fs.Parse(args)
	if err := o.Validate(); err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(2)
	}
	if err := command(ctrl.SetupSignalHandler(), os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
}
