package cli

import (
	"bufio"
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
)

func newBackupDeleteCommand(o *Options) *cobra.Command {
	var confirm bool
	cmd := &cobra.Command{
		Use:   "delete NAME...",
		Short: "Delete backups and their data, through DeleteBackupRequests",
		Long: "Asks ferry-server to delete each backup's snapshots and record from its storage location, then the\n" +
			"Backup object, by creating a DeleteBackupRequest (named <backup>-<random>, labelled\n" +
			"velero.io/backup-name and velero.io/backup-uid, as Velero's CLI does). The Backup object is never\n" +
			"deleted directly: that would leave its data, and backup sync would bring it back.\n" +
			"`kubectl get deletebackuprequests -n <namespace>` shows how each request ended.",
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: completeNames(o, backupList, false),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			backups := make([]*velerov1.Backup, len(args))
			for i, name := range args {
				backups[i] = &velerov1.Backup{}
				if err := o.get(cmd.Context(), c, "backup", name, backups[i]); err != nil {
					return fmt.Errorf("%w; nothing was deleted", err)
				}
			}
			if !confirm && !o.confirmed(fmt.Sprintf("Delete backup(s) %s and their data", strings.Join(args, ", "))) {
				_, err := fmt.Fprintln(o.Out, "Nothing deleted.")
				return err
			}
			for _, b := range backups {
				if err := requestDeletion(cmd.Context(), c, b); err != nil {
					return err
				}
				fmt.Fprintf(o.Out, "Backup %s: deletion requested; it is deleted in the background (ferry backup get %s)\n", b.Name, b.Name)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&confirm, "confirm", false, "do not ask for confirmation")
	return cmd
}

// requestDeletion creates the DeleteBackupRequest ferry-server acts on, as Velero's CLI names it.
func requestDeletion(ctx context.Context, c client.Client, b *velerov1.Backup) error {
	dbr := &velerov1.DeleteBackupRequest{
		ObjectMeta: metav1.ObjectMeta{Namespace: b.Namespace, GenerateName: b.Name + "-",
			Labels: map[string]string{velerov1.LabelBackupName: b.Name, velerov1.LabelBackupUID: string(b.UID)}},
		Spec: velerov1.DeleteBackupRequestSpec{BackupName: b.Name},
	}
	if err := c.Create(ctx, dbr); err != nil {
		return fmt.Errorf("create a DeleteBackupRequest for backup %s/%s: %w", b.Namespace, b.Name, err)
	}
	return nil
}

// confirmed asks question on In and reports whether the answer was yes.
func (o *Options) confirmed(question string) bool {
	fmt.Fprintf(o.Out, "%s? Are you sure (y/N)? ", question)
	line, _ := bufio.NewReader(o.In).ReadString('\n')
	answer := strings.ToLower(strings.TrimSpace(line))
	return answer == "y" || answer == "yes"
}
