package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/ferry-backup/ferry/internal/buildinfo"
)

func newVersionCommand(o *Options) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of this ferry binary",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			_, err := fmt.Fprintf(o.Out, "ferry %s\n", buildinfo.String())
			return err
		},
	}
}
