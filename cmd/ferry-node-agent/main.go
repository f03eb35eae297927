// Command ferry-node-agent runs on every node and backs up and restores the pod volumes and
// volume snapshots targeted at that node.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/pflag"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/ferry-backup/ferry/internal/nodeagent"
)

func main() {
	opts := nodeagent.NewOptions()
	opts.AddFlags(pflag.CommandLine)
	pflag.Parse()
	if err := opts.Validate(); err != nil {
		fmt.Fprintln(os.Stderr, "ferry-node-agent:", err)
		os.Exit(2)
	}
	if err := nodeagent.Run(ctrl.SetupSignalHandler(), opts); err != nil {
		fmt.Fprintln(os.Stderr, "ferry-node-agent:", err)
		os.Exit(1)
	}
}
