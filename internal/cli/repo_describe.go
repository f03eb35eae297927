package cli

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
)

func newRepoDescribeCommand(o *Options) *cobra.Command {
	return &cobra.Command{
		Use:               "describe NAME",
		Short:             "Show a backup repository: its health as its last maintenance measured it, and its latest maintenance runs",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeNames(o, repoList, true),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			r := &velerov1.BackupRepository{}
			if err := o.get(cmd.Context(), c, "backup repository", args[0], r); err != nil {
				return err
			}
			return describeRepo(o.Out, r, time.Now())
		},
	}
}

func describeRepo(w io.Writer, r *velerov1.BackupRepository, now time.Time) error {
	p := func(format string, a ...any) { fmt.Fprintf(w, format+"\n", a...) }
	health := repoHealth(r, now)
	p("Name:              %s", r.Name)
	p("Namespace:         %s", r.Namespace)
	p("Location:          %s", r.Spec.BackupStorageLocation)
	p("Volume namespace:  %s", orNone(r.Spec.VolumeNamespace))
	p("Type:              %s", orDefault(r.Spec.RepositoryType, velerov1.RepositoryTypeKopia))
	p("Phase:             %s", orDefault(string(r.Status.Phase), "New"))
	p("Message:           %s", orNone(r.Status.Message))
	p("Maintenance:       every %s, last succeeded %s, lag %s", r.Spec.MaintenanceFrequency.Duration, ago(r.Status.LastMaintenanceTime, now), health[6])
	p("Last quick:        %s", health[4])
	p("Last full:         %s", health[5])
	if s, ok := r.RepositoryStats(); ok && !s.Measured.IsZero() {
		p("")
		p("Storage (measured %s ago):", age(metav1.NewTime(s.Measured), now))
		p("  Size:            %s", byteSize(s.SizeBytes))
		for _, kind := range []string{"pack", "metadata", "index", "other"} {
			p("  %-16s %d blobs, %s", kind+":", s.Blobs[kind], byteSize(s.BlobBytes[kind]))
		}
		p("  Snapshots:       %d, %s of files", s.Snapshots, byteSize(s.LogicalBytes))
		p("  Live:            %s (deduplication ratio %.2f)", byteSize(s.LiveBytes), s.DedupRatio)
		p("  Reclaimable:     %s (%s marked deleted)", byteSize(s.ReclaimableBytes), byteSize(s.DeletedBytes))
		if s.LastFull != nil {
			p("  Last full freed: %s", byteSize(s.LastFullFreedBytes))
		}
	}
	p("")
	if len(r.Status.RecentMaintenance) == 0 {
		p("Recent maintenance: <none>")
		return nil
	}
	p("Recent maintenance:")
	t := table{header: []string{"  RESULT", "STARTED", "ENDED", "MESSAGE"}}
	for i := len(r.Status.RecentMaintenance) - 1; i >= 0; i-- {
		m := r.Status.RecentMaintenance[i]
		t.rows = append(t.rows, []string{"  " + string(m.Result), ago(m.StartTimestamp, now), ago(m.CompleteTimestamp, now), orNone(m.Message)})
	}
	return writeTable(w, t)
}
