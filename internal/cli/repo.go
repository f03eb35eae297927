package cli

import (
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"

	"github.com/spf13/cobra"
	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
)

func newRepoCommand(o *Options) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "repo",
		Aliases: []string{"repos", "backup-repository"},
		Short:   "Show, maintain and verify the backup repositories (Ferry keeps one per storage location)",
	}
	cmd.AddCommand(newRepoGetCommand(o), newRepoDescribeCommand(o), newRepoMaintainCommand(o), newRepoVerifyCommand(o))
	return cmd
}

func repoList() client.ObjectList { return &velerov1.BackupRepositoryList{} }

func newRepoGetCommand(o *Options) *cobra.Command {
	return getCommand[velerov1.BackupRepository, *velerov1.BackupRepository]{kind: "backup repository",
		short: "List backup repositories: location, volume namespace, phase, last maintenance, message",
		long: "Lists the BackupRepository objects: ferry-server keeps one per storage location, Velero one per\n" +
			"location and volume namespace. -o wide adds the repository type, the maintenance frequency, the repository's\n" +
			"health as its last maintenance measured it (size, snapshots, deduplication ratio, bytes later full maintenance\n" +
			"frees), when quick and full maintenance last succeeded, how far maintenance is behind its schedule, and the\n" +
			"last maintenance run.",
		newList: repoList, items: func(l client.ObjectList) *[]velerov1.BackupRepository {
			return &l.(*velerov1.BackupRepositoryList).Items
		},
		table: repoTable}.command(o)
}

func repoTable(items []velerov1.BackupRepository, wide bool, now time.Time) table {
	t := table{header: []string{"NAME", "LOCATION", "VOLUME NAMESPACE", "PHASE", "LAST MAINTENANCE", "MESSAGE"}}
	if wide {
		t.header = append(t.header, "TYPE", "MAINTENANCE FREQUENCY", "SIZE", "SNAPSHOTS", "DEDUP", "RECLAIMABLE",
			"LAST QUICK", "LAST FULL", "LAG", "LAST RUN")
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
			row = append(row, orDefault(r.Spec.RepositoryType, velerov1.RepositoryTypeKopia), r.Spec.MaintenanceFrequency.Duration.String())
			row = append(append(row, repoHealth(&r, now)...), run)
		}
		t.rows = append(t.rows, row)
	}
	return t
}

// defaultMaintenanceFrequency is ferry-server's schedule when spec.maintenanceFrequency is not
// a positive duration.
const defaultMaintenanceFrequency = time.Hour

// repoHealth is the wide table's SIZE, SNAPSHOTS, DEDUP, RECLAIMABLE, LAST QUICK, LAST FULL and
// LAG: <unknown> until a maintenance Job measured them.
func repoHealth(r *velerov1.BackupRepository, now time.Time) []string {
	every := r.Spec.MaintenanceFrequency.Duration
	if every <= 0 {
		every = defaultMaintenanceFrequency
	}
	lag := "0s"
	if l := r.MaintenanceLag(every, now); l > 0 {
		lag = duration.HumanDuration(l)
	}
	cols := []string{"<unknown>", "<unknown>", "<unknown>", "<unknown>", "<unknown>", "<unknown>", lag}
	s, ok := r.RepositoryStats()
	if !ok {
		return cols
	}
	if !s.Measured.IsZero() {
		cols[0], cols[1], cols[2], cols[3] = byteSize(s.SizeBytes), fmt.Sprint(s.Snapshots), fmt.Sprintf("%.2f", s.DedupRatio), byteSize(s.ReclaimableBytes)
	}
	for i, at := range []*time.Time{s.LastQuick, s.LastFull} {
		if at != nil {
			cols[4+i] = age(metav1.NewTime(*at), now) + " ago"
		}
	}
	return cols
}
