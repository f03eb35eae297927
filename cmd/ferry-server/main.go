// Command ferry-server validates storage locations, keeps backup repositories and turns Backups
// and Restores into node-agent work.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/pflag"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/ferry-backup/ferry/internal/server"
)

func main() {
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
