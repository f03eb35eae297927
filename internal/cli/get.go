package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// getCommand describes one kind's `get [NAME...]`: T is the object type, PT its pointer.
type getCommand[T any, PT interface {
	*T
	client.Object
}] struct {
	// kind names the kind in messages, e.g. "backup storage location".
	kind        string
	short, long string
	newList     func() client.ObjectList
	// items is the list's Items.
	items func(client.ObjectList) *[]T
	table func(items []T, wide bool, now time.Time) table
}

// command lists the kind's objects in Ferry's namespace, or shows the named ones: a table
// (-o wide for more columns), or the object (one name) or list as YAML, JSON or a JSONPath.
func (g getCommand[T, PT]) command(o *Options) *cobra.Command {
	out := &output{}
	cmd := &cobra.Command{
		Use:               "get [NAME...]",
		Short:             g.short,
		Long:              g.long,
		Args:              cobra.ArbitraryArgs,
		ValidArgsFunction: completeNames(o, g.newList, false),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			list := g.newList()
			items := g.items(list)
			if len(args) == 0 {
				if err := c.List(cmd.Context(), list, client.InNamespace(o.Namespace)); err != nil {
					return fmt.Errorf("list %ss in namespace %s: %w", g.kind, o.Namespace, err)
				}
			}
			for _, n := range args {
				var obj T
				if err := o.get(cmd.Context(), c, g.kind, n, PT(&obj)); err != nil {
					return err
				}
				*items = append(*items, obj)
			}
			rows := func(wide bool) table { return g.table(*items, wide, time.Now()) }
			if len(args) == 1 {
				return out.print(o.Out, c.Scheme(), PT(&(*items)[0]), rows)
			}
			return out.print(o.Out, c.Scheme(), list, rows)
		},
	}
	out.addFlag(cmd)
	return cmd
}
