package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
)

// locationSetOptions configure `ferry backup-location set`.
type locationSetOptions struct {
	*Options
	Default    bool
	Credential map[string]string
}

func newLocationSetCommand(o *Options) *cobra.Command {
	so := &locationSetOptions{Options: o}
	cmd := &cobra.Command{
		Use:   "set NAME [--default] [--credential secret=key]",
		Short: "Change a backup storage location: make it the default, or change its credential",
		Long: "--default makes NAME the location of backups that name none and takes the mark off the previous\n" +
			"default (--default=false takes it off NAME). --credential names another Secret key holding the\n" +
			"storage credentials; ferry-server checks the location again.",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeNames(o, locationList, true),
		RunE: func(cmd *cobra.Command, args []string) error {
			setDefault, setCredential := cmd.Flags().Changed("default"), cmd.Flags().Changed("credential")
			if !setDefault && !setCredential {
				return fmt.Errorf("nothing to set: give --default or --credential")
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			return so.run(cmd.Context(), c, args[0], setDefault, setCredential)
		},
	}
	cmd.Flags().BoolVar(&so.Default, "default", false, "make this the default location (and no other)")
	cmd.Flags().StringToStringVar(&so.Credential, "credential", nil, "Secret and key in Ferry's namespace holding the credentials: secret=key")
	return cmd
}

func (so *locationSetOptions) run(ctx context.Context, c client.Client, name string, setDefault, setCredential bool) error {
	bsl := &velerov1.BackupStorageLocation{}
	if err := so.get(ctx, c, "backup storage location", name, bsl); err != nil {
		return err
	}
	patch := client.MergeFrom(bsl.DeepCopy())
	if setCredential {
		cred, err := credential(so.Credential)
		if err != nil {
			return err
		}
		bsl.Spec.Credential = cred
	}
	if setDefault && so.Default {
		if err := so.clearDefault(ctx, c, name); err != nil {
			return err
		}
	}
	if setDefault {
		bsl.Spec.Default = so.Default
	}
	if err := c.Patch(ctx, bsl, patch); err != nil {
		return fmt.Errorf("update backup storage location %s/%s: %w", so.Namespace, name, err)
	}
	_, err := fmt.Fprintf(so.Out, "Backup storage location %s updated\n", name)
	return err
}

// clearDefault takes the default mark off every location but keep.
func (so *locationSetOptions) clearDefault(ctx context.Context, c client.Client, keep string) error {
	list := &velerov1.BackupStorageLocationList{}
	if err := c.List(ctx, list, client.InNamespace(so.Namespace)); err != nil {
		return fmt.Errorf("list backup storage locations in namespace %s: %w", so.Namespace, err)
	}
	for i := range list.Items {
		l := &list.Items[i]
		if l.Name == keep || !l.Spec.Default {
			continue
		}
		patch := client.MergeFrom(l.DeepCopy())
		l.Spec.Default = false
		if err := c.Patch(ctx, l, patch); err != nil {
			return fmt.Errorf("take the default mark off backup storage location %s: %w", l.Name, err)
		}
		fmt.Fprintf(so.Out, "Backup storage location %s is no longer the default\n", l.Name)
	}
	return nil
}
