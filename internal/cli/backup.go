package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferry-backup/ferry/api/shared"
	velerov1 "github.com/ferry-backup/ferry/api/v1"
)

func newBackupCommand(o *Options) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "backup",
		Aliases: []string{"backups"},
		Short:   "Create, list, describe, verify and delete backups",
	}
	cmd.AddCommand(newBackupCreateCommand(o), newBackupGetCommand(o), newDescribeCommand(o, "backup"), newBackupDeleteCommand(o),
		newBackupVerifyCommand(o))
	return cmd
}

func backupList() client.ObjectList { return &velerov1.BackupList{} }

// backupCreateOptions configure `ferry backup create`.
type backupCreateOptions struct {
	*Options
	IncludeNamespaces, ExcludeNamespaces []string
	// Selector is a label selector of the pods whose volumes are backed up.
	Selector string
	// DefaultVolumesToFsBackup and SnapshotMoveData are set on the Backup only when given.
	DefaultVolumesToFsBackup, SnapshotMoveData bool
	StorageLocation                            string
	// TTL is how long the backup is kept; 0 leaves the server's default.
	TTL time.Duration
	// Wait follows the backup to its end.
	Wait bool
}

func newBackupCreateCommand(o *Options) *cobra.Command {
	bo := &backupCreateOptions{Options: o}
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a backup of the volumes of the selected pods",
		Long: "Creates a Backup in Ferry's namespace. ferry-server backs up the selected pods' volumes: through the\n" +
			"node-agents (file system, PodVolumeBackups) or, with --snapshot-move-data, from CSI snapshots\n" +
			"(data mover, DataUploads). With --wait, follows it to its end and exits non-zero unless it Completed.",
		Example: "  ferry backup create app-1 --include-namespaces app --default-volumes-to-fs-backup --wait",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := bo.backup(cmd, args[0])
			if err != nil {
				return err
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			return bo.run(cmd.Context(), c, b)
		},
	}
	bo.addSpecFlags(cmd)
	cmd.Flags().BoolVar(&bo.Wait, "wait", false, "follow the backup to its end; exit non-zero unless it Completed")
	return cmd
}

// addSpecFlags registers the flags that make a Backup's spec (backup create, schedule create).
func (bo *backupCreateOptions) addSpecFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringSliceVar(&bo.IncludeNamespaces, "include-namespaces", nil, "namespaces to back up (default: all)")
	f.StringSliceVar(&bo.ExcludeNamespaces, "exclude-namespaces", nil, "namespaces to leave out")
	f.StringVarP(&bo.Selector, "selector", "l", "", "back up only the pods matching this label selector (e.g. app=web or 'app=web,tier in (front,back)')")
	f.BoolVar(&bo.DefaultVolumesToFsBackup, "default-volumes-to-fs-backup", false,
		"back up every pod volume through the file system unless the pod opts it out (default: the server's)")
	f.BoolVar(&bo.SnapshotMoveData, "snapshot-move-data", false, "move the data of CSI snapshots into the repository (the data mover)")
	f.StringVar(&bo.StorageLocation, "storage-location", "", "backup storage location (default: the default location)")
	f.DurationVar(&bo.TTL, "ttl", 0, "how long to keep the backup, e.g. 720h (default: the server's)")
	completeFlag(cmd, "storage-location", bo.Options, locationList)
}

// backup builds the Backup the flags ask for; optional booleans are set only when given.
func (bo *backupCreateOptions) backup(cmd *cobra.Command, name string) (*velerov1.Backup, error) {
	b := &velerov1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: bo.Namespace, Name: name},
		Spec: velerov1.BackupSpec{IncludedNamespaces: bo.IncludeNamespaces, ExcludedNamespaces: bo.ExcludeNamespaces,
			StorageLocation: bo.StorageLocation}}
	if bo.Selector != "" {
		sel, err := metav1.ParseToLabelSelector(bo.Selector)
		if err != nil {
			return nil, fmt.Errorf("--selector %q: %w", bo.Selector, err)
		}
		b.Spec.LabelSelector = sel
	}
	if bo.TTL < 0 {
		return nil, fmt.Errorf("--ttl %s: want a positive duration", bo.TTL)
	}
	if bo.TTL > 0 {
		b.Spec.TTL = shared.Duration{Duration: bo.TTL}
	}
	if cmd.Flags().Changed("default-volumes-to-fs-backup") {
		b.Spec.DefaultVolumesToFsBackup = ptr.To(bo.DefaultVolumesToFsBackup)
	}
	if cmd.Flags().Changed("snapshot-move-data") {
		b.Spec.SnapshotMoveData = ptr.To(bo.SnapshotMoveData)
	}
	return b, nil
}

func (bo *backupCreateOptions) run(ctx context.Context, c client.Client, b *velerov1.Backup) error {
	if b.Spec.StorageLocation != "" {
		if err := bo.get(ctx, c, "backup storage location", b.Spec.StorageLocation, &velerov1.BackupStorageLocation{}); err != nil {
			return fmt.Errorf("--storage-location: %w; nothing was created", err)
		}
	}
	if err := c.Create(ctx, b); err != nil {
		return fmt.Errorf("create backup %s/%s: %w", b.Namespace, b.Name, err)
	}
	if !bo.Wait {
		_, err := fmt.Fprintf(bo.Out, "Backup %s created; follow it with: ferry backup describe %s\n", b.Name, b.Name)
		return err
	}
	fmt.Fprintf(bo.Out, "Backup %s created; following it (Ctrl-C stops following, not the backup)\n", b.Name)
	return follow(ctx, "backup", b.Name, backupLoader(bo.Options, c, b.Name), newDisplay(bo.Out), pollInterval)
}
