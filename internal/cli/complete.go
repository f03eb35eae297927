package cli

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// completeNames completes the names of the objects newList lists in Ferry's namespace, leaving
// out those already on the command line; with one set, only the first argument is completed.
func completeNames(o *Options, newList func() client.ObjectList, one bool) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		if one && len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		names, err := o.listNames(cmd.Context(), newList())
		if err != nil {
			cobra.CompErrorln(err.Error())
			return nil, cobra.ShellCompDirectiveError
		}
		var out []string
		for _, n := range names {
			if strings.HasPrefix(n, toComplete) && !slices.Contains(args, n) {
				out = append(out, n)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// completeFlag is completeNames for a flag's value.
func completeFlag(cmd *cobra.Command, flag string, o *Options, newList func() client.ObjectList) {
	_ = cmd.RegisterFlagCompletionFunc(flag, completeNames(o, newList, false))
}

func (o *Options) listNames(ctx context.Context, list client.ObjectList) ([]string, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second) // a shell waits for completions
	defer cancel()
	c, err := o.client()
	if err != nil {
		return nil, err
	}
	if err := c.List(ctx, list, client.InNamespace(o.Namespace)); err != nil {
		return nil, err
	}
	items, err := meta.ExtractList(list)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(items))
	for _, item := range items {
		if m, err := meta.Accessor(item); err == nil {
			names = append(names, m.GetName())
		}
	}
	return names, nil
}
