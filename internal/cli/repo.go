package cli

import (
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
)

func newRepoCommand(o *Options) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "repo",
		Aliases: []string{"repos", "backup-repository"},
		Short:   "Show the backup repositories (Ferry keeps one per storage location)",
	}
	cmd.AddCommand(newRepoGetCommand(o))
	return cmd
}

func repoList() client.ObjectList { return &velerov1.BackupRepositoryList{} }

func newRepoGetCommand(o *Options) *cobra.Command {
	return getCommand[velerov1.BackupRepository, *velerov1.BackupRepository]{kind: "backup repository",
		short: "List backup repositories: location, volume namespace, phase, last maintenance, message",
		long: "Lists the BackupRepository objects: ferry-server keeps one per storage location, Velero one per\n" +
			"location and volume namespace. -o wide adds the repository type, the maintenance frequency and the last maintenance run.",
		newList: repoList, items: func(l client.ObjectList) *[]velerov1.BackupRepository {
			return &l.(*velerov1.BackupRepositoryList).Items
		},
		table: repoTable}.command(o)
}

func repoTable(items []velerov1.BackupRepository, wide bool, now time.Time) table {
	t := table{header: []string{"NAME", "LOCATION", "VOLUME NAMESPACE", "PHASE", "LAST MAINTENANCE", "MESSAGE"}}
	if wide {
		t.header = append(t.header, "TYPE", "MAINTENANCE FREQUENCY", "LAST RUN")
	}
	for _, r := range items {
		last := "<never>"
		if m := r.Status.LastMaintenanceTime; m != nil {
			last = age(*m, now) + " ago"
		}
		row := []string{r.Name, r.Spec.BackupStorageLocation, r.Spec.VolumeNamespace, orDefault(string(r.Status.Phase), "New"),
			last, orNone(r.Status.Message)}
		if wide {
			run := "<none>"
			if n := len(r.Status.RecentMaintenance); n > 0 {
				m := r.Status.RecentMaintenance[n-1]
				run = string(m.Result)
				if m.Message != "" {
					run += ": " + m.Message
				}
			}
			row = append(row, orDefault(r.Spec.RepositoryType, velerov1.RepositoryTypeKopia), r.Spec.MaintenanceFrequency.Duration.String(), run)
		}
		t.rows = append(t.rows, row)
	}
	return t
}
