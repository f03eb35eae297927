package cli

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
)

func newBackupGetCommand(o *Options) *cobra.Command {
	out := &output{}
	cmd := &cobra.Command{
		Use:               "get [NAME...]",
		Short:             "List backups, or show the named ones",
		Args:              cobra.ArbitraryArgs,
		ValidArgsFunction: completeNames(o, backupList, false),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			obj, items, err := getBackups(cmd.Context(), o, c, args)
			if err != nil {
				return err
			}
			return out.print(o.Out, c.Scheme(), obj, func(wide bool) table { return backupTable(items, wide, time.Now()) })
		},
	}
	out.addFlag(cmd)
	return cmd
}

// getBackups reads the named backups, or all of them; obj is the one named backup, or a list.
func getBackups(ctx context.Context, o *Options, c client.Client, names []string) (runtime.Object, []velerov1.Backup, error) {
	list := &velerov1.BackupList{}
	if len(names) == 0 {
		if err := c.List(ctx, list, client.InNamespace(o.Namespace)); err != nil {
			return nil, nil, fmt.Errorf("list backups in namespace %s: %w", o.Namespace, err)
		}
		return list, list.Items, nil
	}
	for _, n := range names {
		b := velerov1.Backup{}
		if err := o.get(ctx, c, "backup", n, &b); err != nil {
			return nil, nil, err
		}
		list.Items = append(list.Items, b)
	}
	if len(names) == 1 {
		return &list.Items[0], list.Items, nil
	}
	return list, list.Items, nil
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
