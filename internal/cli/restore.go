package cli

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
)

func newRestoreCommand(o *Options) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "restore",
		Aliases: []string{"restores"},
		Short:   "Create, list and describe restores",
	}
	cmd.AddCommand(newRestoreCreateCommand(o), newRestoreGetCommand(o), newDescribeCommand(o, "restore"))
	return cmd
}

func restoreList() client.ObjectList { return &velerov1.RestoreList{} }

// restoreCreateOptions configure `ferry restore create`.
type restoreCreateOptions struct {
	*Options
	FromBackup string
	// FromSchedule restores the schedule's latest Completed backup (ferry-server picks it).
	FromSchedule string
	// NamespaceMappings are src:dst pairs: the volumes of src are restored into dst.
	NamespaceMappings                    []string
	IncludeNamespaces, ExcludeNamespaces []string
	Wait                                 bool
}

func newRestoreCreateCommand(o *Options) *cobra.Command {
	ro := &restoreCreateOptions{Options: o}
	cmd := &cobra.Command{
		Use:   "create [NAME] --from-backup BACKUP | --from-schedule SCHEDULE",
		Short: "Restore the volumes of a backup",
		Long: "Creates a Restore of a backup's volumes (NAME defaults to <backup>-<yyyymmddhhmmss>). Pods whose volumes\n" +
			"were backed up through the file system get them back through PodVolumeRestores; claims backed up by\n" +
			"the data mover are re-created and filled through DataDownloads. --from-schedule restores the schedule's\n" +
			"latest Completed backup, which ferry-server picks. With --wait, follows it to its end and exits\n" +
			"non-zero unless it Completed.",
		Example: "  ferry restore create --from-backup app-1 --namespace-mappings app:app-copy --wait",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := ""
			if len(args) == 1 {
				name = args[0]
			}
			r, err := ro.restore(name, time.Now())
			if err != nil {
				return err
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			return ro.run(cmd.Context(), c, r)
		},
	}
	f := cmd.Flags()
	f.StringVar(&ro.FromBackup, "from-backup", "", "backup to restore")
	f.StringVar(&ro.FromSchedule, "from-schedule", "", "schedule whose latest Completed backup to restore")
	f.StringSliceVar(&ro.NamespaceMappings, "namespace-mappings", nil, "restore namespaces under other names: src:dst,...")
	f.StringSliceVar(&ro.IncludeNamespaces, "include-namespaces", nil, "backed-up namespaces to restore (default: all)")
	f.StringSliceVar(&ro.ExcludeNamespaces, "exclude-namespaces", nil, "backed-up namespaces to leave out")
	f.BoolVar(&ro.Wait, "wait", false, "follow the restore to its end; exit non-zero unless it Completed")
	cmd.MarkFlagsOneRequired("from-backup", "from-schedule")
	cmd.MarkFlagsMutuallyExclusive("from-backup", "from-schedule")
	completeFlag(cmd, "from-backup", o, backupList)
	completeFlag(cmd, "from-schedule", o, scheduleList)
	return cmd
}

func (ro *restoreCreateOptions) restore(name string, now time.Time) (*velerov1.Restore, error) {
	from := ro.FromBackup
	switch {
	case ro.FromBackup != "" && ro.FromSchedule != "":
		return nil, fmt.Errorf("--from-backup and --from-schedule: name one")
	case ro.FromSchedule != "":
		from = ro.FromSchedule
	case ro.FromBackup == "":
		return nil, fmt.Errorf("--from-backup: name the backup to restore (or --from-schedule)")
	}
	if name == "" {
		name = from + "-" + now.Format("20060102150405") // Velero's default name
	}
	r := &velerov1.Restore{ObjectMeta: metav1.ObjectMeta{Namespace: ro.Namespace, Name: name},
		Spec: velerov1.RestoreSpec{BackupName: ro.FromBackup, ScheduleName: ro.FromSchedule, IncludedNamespaces: ro.IncludeNamespaces,
			ExcludedNamespaces: ro.ExcludeNamespaces}}
	for _, m := range ro.NamespaceMappings {
		src, dst, ok := strings.Cut(m, ":")
		if !ok || src == "" || dst == "" || strings.Contains(dst, ":") {
			return nil, fmt.Errorf("--namespace-mappings %q: want src:dst", m)
		}
		if r.Spec.NamespaceMapping == nil {
			r.Spec.NamespaceMapping = map[string]string{}
		}
		if _, dup := r.Spec.NamespaceMapping[src]; dup {
			return nil, fmt.Errorf("--namespace-mappings: namespace %s is mapped twice", src)
		}
		r.Spec.NamespaceMapping[src] = dst
	}
	return r, nil
}

func (ro *restoreCreateOptions) run(ctx context.Context, c client.Client, r *velerov1.Restore) error {
	if ro.FromSchedule != "" {
		if err := ro.get(ctx, c, "schedule", ro.FromSchedule, &velerov1.Schedule{}); err != nil {
			return fmt.Errorf("--from-schedule: %w; nothing was created", err)
		}
	} else if err := ro.get(ctx, c, "backup", ro.FromBackup, &velerov1.Backup{}); err != nil {
		return fmt.Errorf("--from-backup: %w; nothing was created", err)
	}
	if err := c.Create(ctx, r); err != nil {
		return fmt.Errorf("create restore %s/%s: %w", r.Namespace, r.Name, err)
	}
	if !ro.Wait {
		_, err := fmt.Fprintf(ro.Out, "Restore %s created; follow it with: ferry restore describe %s\n", r.Name, r.Name)
		return err
	}
	fmt.Fprintf(ro.Out, "Restore %s created; following it (Ctrl-C stops following, not the restore)\n", r.Name)
	return follow(ctx, "restore", r.Name, restoreLoader(ro.Options, c, r.Name), newDisplay(ro.Out), pollInterval)
}

func newRestoreGetCommand(o *Options) *cobra.Command {
	return getCommand[velerov1.Restore, *velerov1.Restore]{kind: "restore", short: "List restores, or show the named ones",
		newList: restoreList, items: func(l client.ObjectList) *[]velerov1.Restore { return &l.(*velerov1.RestoreList).Items },
		table: restoreTable}.command(o)
}

func restoreTable(items []velerov1.Restore, wide bool, now time.Time) table {
	t := table{header: []string{"NAME", "BACKUP", "STATUS", "STARTED", "COMPLETED", "ERRORS", "WARNINGS", "VOLUMES", "CREATED"}}
	if wide {
		t.header = append(t.header, "NAMESPACE MAPPINGS")
	}
	for _, r := range items {
		s := r.Status
		row := []string{r.Name, r.Spec.BackupName, orDefault(string(s.Phase), "New"), timestamp(s.StartTimestamp), timestamp(s.CompletionTimestamp),
			strconv.Itoa(s.Errors), strconv.Itoa(s.Warnings), volumeCounts(s.PodVolumeRestores, s.DataDownloads), age(r.CreationTimestamp, now)}
		if wide {
			var m []string
			for _, src := range slices.Sorted(maps.Keys(r.Spec.NamespaceMapping)) {
				m = append(m, src+":"+r.Spec.NamespaceMapping[src])
			}
			row = append(row, orNone(strings.Join(m, ",")))
		}
		t.rows = append(t.rows, row)
	}
	return t
}
