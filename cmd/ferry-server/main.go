// Command ferry-server validates storage locations, keeps backup repositories and turns Backups
// and Restores into node-agent work. `ferry-server maintain` is the command of a repository
// maintenance Job: it runs one maintenance and reports the result; `ferry-server verify`, of a
// backup verification Job, verifies one backup's snapshots.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/pflag"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/ferry-backup/ferry/internal/server"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "maintain" {
		maintain(os.Args[2:])
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "verify" {
		verify(os.Args[2:])
		return
	}
	opts := server.NewOptions()
	opts.AddFlags(pflag.CommandLine)
	pflag.Parse()
	if err := opts.Validate(); err != nil {
		fmt.Fprintln(os.Stderr, "ferry-server:", err)
		os.Exit(2)
	}
	if err := server.Run(ctrl.SetupSignalHandler(), opts); err != nil {
		fmt.Fprintln(os.Stderr, "ferry-server:", err)
		os.Exit(1)
	}
}

func maintain(args []string) {
	opts := server.NewMaintainOptions()
	fs := pflag.NewFlagSet("ferry-server maintain", pflag.ExitOnError)
	opts.AddFlags(fs)
	_ = fs.Parse(args)
	if err := opts.Validate(); err != nil {
		fmt.Fprintln(os.Stderr, "ferry-server maintain:", err)
		os.Exit(2)
	}
	if err := server.Maintain(ctrl.SetupSignalHandler(), opts, os.Stdout); err != nil {
		os.Exit(1)
	}
}

func verify(args []string) {
	opts := server.NewVerifyOptions()
	fs := pflag.NewFlagSet("ferry-server verify", pflag.ExitOnError)
	opts.AddFlags(fs)
	_ = fs.Parse(args)
	if err := opts.Validate(); err != nil {
		fmt.Fprintln(os.Stderr, "ferry-server verify:", err)
		os.Exit(2)
	}
	if err := server.Verify(ctrl.SetupSignalHandler(), opts, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "ferry-server verify:", err)
		os.Exit(1)
	}
}
