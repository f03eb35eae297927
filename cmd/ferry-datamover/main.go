// Command ferry-datamover runs in a mover pod and moves the data of one DataUpload or
// DataDownload between a mounted volume and the repository.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/pflag"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/ferry-backup/ferry/internal/datamover"
	"github.com/ferry-backup/ferry/internal/memlimit"
)

func main() {
	memlimit.Apply("/") // a mover pod's limit is the node-agent ConfigMap's podResources
	opts := datamover.NewOptions()
	opts.AddFlags(pflag.CommandLine)
	pflag.Parse()
	if err := opts.Validate(); err != nil {
		fmt.Fprintln(os.Stderr, "ferry-datamover:", err)
		os.Exit(2)
	}
	if err := datamover.Run(ctrl.SetupSignalHandler(), opts); err != nil {
		fmt.Fprintln(os.Stderr, "ferry-datamover:", err)
		os.Exit(1)
	}
}
