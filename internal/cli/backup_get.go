package cli

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
)

func newBackupGetCommand(o *Options) *cobra.Command {
	return getCommand[velerov1.Backup, *velerov1.Backup]{kind: "backup", short: "List backups, or show the named ones",
		newList: backupList, items: func(l client.ObjectList) *[]velerov1.Backup { return &l.(*velerov1.BackupList).Items },
		table: backupTable}.command(o)
}

func backupTable(items []velerov1.Backup, wide bool, now time.Time) table {
	t := table{header: []string{"NAME", "STATUS", "ERRORS", "WARNINGS", "VOLUMES", "CREATED", "EXPIRES", "STORAGE LOCATION", "SELECTOR"}}
	if wide {
		t.header = append(t.header, "NAMESPACES", "DURATION")
	}
	for _, b := range items {
		expires := "<none>"
		if e := b.Status.Expiration; e != nil {
			expires = durationUntil(e.Time, now)
		}
		row := []string{b.Name, orDefault(string(b.Status.Phase), "New"), strconv.Itoa(b.Status.Errors), strconv.Itoa(b.Status.Warnings),
			volumeCounts(b.Status.PodVolumeBackups, b.Status.DataUploads), age(b.CreationTimestamp, now), expires,
			orDefault(b.Spec.StorageLocation, "<default>"), selectorText(b.Spec.LabelSelector)}
		if wide {
			row = append(row, orDefault(strings.Join(b.Spec.IncludedNamespaces, ","), "*"),
				operationDuration(b.Status.StartTimestamp, b.Status.CompletionTimestamp, now))
		}
		t.rows = append(t.rows, row)
	}
	return t
}

// volumeCounts is "completed/total" over both paths, with failures when there are any.
func volumeCounts(counts ...*velerov1.VolumeOperationCounts) string {
	var done, total, failed int
	for _, c := range counts {
		if c != nil {
			done, total, failed = done+c.Completed, total+c.Total, failed+c.Failed
		}
	}
	s := fmt.Sprintf("%d/%d", done, total)
	if failed > 0 {
		s += fmt.Sprintf(" (%d failed)", failed)
	}
	return s
}

func selectorText(s *metav1.LabelSelector) string {
	if s == nil {
		return "<none>"
	}
	return orNone(metav1.FormatLabelSelector(s))
}

func durationUntil(t, now time.Time) string {
	if d := t.Sub(now); d > 0 {
		return age(metav1.NewTime(now.Add(-d)), now)
	}
	return "expired"
}

func operationDuration(start, end *metav1.Time, now time.Time) string {
	switch {
	case start == nil:
		return "<none>"
	case end == nil:
		return now.Sub(start.Time).Round(time.Second).String() + " so far"
	}
	return end.Sub(start.Time).Round(time.Second).String()
}
