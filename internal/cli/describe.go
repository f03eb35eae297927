package cli

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
)

// field is one "Name: value" line of describe.
type field struct{ name, value string }

func newDescribeCommand(o *Options, kind string) *cobra.Command {
	var details bool
	list := backupList
	if kind == "restore" {
		list = restoreList
	}
	cmd := &cobra.Command{
		Use:   "describe NAME",
		Short: "Show a " + kind + " and every one of its volumes",
		Long: "Shows the " + kind + "'s settings and outcome, then one row per volume: its path (file system or data\n" +
			"mover), pod or claim, node, phase, snapshot ID, bytes done of total, files, incremental bytes and\n" +
			"duration, and why the failed ones failed. --details adds the object behind each volume.",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeNames(o, list, true),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			return describeOperation(cmd.Context(), o, c, kind, args[0], details)
		},
	}
	cmd.Flags().BoolVar(&details, "details", false, "name the PodVolumeBackup, DataUpload, PodVolumeRestore or DataDownload behind each volume")
	return cmd
}

func describeOperation(ctx context.Context, o *Options, c client.Client, kind, name string, details bool) error {
	var fields []field
	var load loader
	var annotations map[string]string
	if kind == "restore" {
		r := &velerov1.Restore{}
		if err := o.get(ctx, c, "restore", name, r); err != nil {
			return err
		}
		fields, load = restoreFields(r), restoreLoader(o, c, name)
	} else {
		b := &velerov1.Backup{}
		if err := o.get(ctx, c, "backup", name, b); err != nil {
			return err
		}
		fields, load = backupFields(b), backupLoader(o, c, name)
		annotations = b.Annotations
	}
	op, err := load(ctx)
	if err != nil {
		return err
	}
	now := time.Now()
	fields = append(fields, outcomeFields(op, now)...)
	if err := writeDescription(o.Out, fields, op, details, now); err != nil || kind == "restore" {
		return err
	}
	describeVerification(o.Out, name, annotations, now)
	return nil
}

func backupFields(b *velerov1.Backup) []field {
	s := b.Spec
	f := []field{{"Name", b.Name}, {"Namespace", b.Namespace}, {"Phase", orDefault(string(b.Status.Phase), "New")},
		{"Storage location", orDefault(s.StorageLocation, "<default>")},
		{"Included namespaces", orDefault(strings.Join(s.IncludedNamespaces, ", "), "*")},
		{"Excluded namespaces", orNone(strings.Join(s.ExcludedNamespaces, ", "))},
		{"Selector", selectorText(s.LabelSelector)},
		{"Default volumes to fs backup", optionalBool(s.DefaultVolumesToFsBackup)},
		{"Snapshot move data", optionalBool(s.SnapshotMoveData)},
		{"TTL", "<default>"}}
	if s.TTL.Duration > 0 {
		f[len(f)-1].value = s.TTL.Duration.String()
	}
	if e := b.Status.Expiration; e != nil {
		f = append(f, field{"Expiration", timestamp(e)})
	}
	return f
}

func restoreFields(r *velerov1.Restore) []field {
	s := r.Spec
	var mappings []string
	for _, src := range slices.Sorted(maps.Keys(s.NamespaceMapping)) {
		mappings = append(mappings, src+":"+s.NamespaceMapping[src])
	}
	return []field{{"Name", r.Name}, {"Namespace", r.Namespace}, {"Phase", orDefault(string(r.Status.Phase), "New")},
		{"Backup", s.BackupName},
		{"Included namespaces", orDefault(strings.Join(s.IncludedNamespaces, ", "), "*")},
		{"Excluded namespaces", orNone(strings.Join(s.ExcludedNamespaces, ", "))},
		{"Namespace mappings", orNone(strings.Join(mappings, ", "))}}
}

func outcomeFields(op operation, now time.Time) []field {
	f := []field{{"Started", timestamp(op.Start)}, {"Completed", timestamp(op.End)},
		{"Duration", operationDuration(op.Start, op.End, now)},
		{"Errors", strconv.Itoa(op.Errors)}, {"Warnings", strconv.Itoa(op.Warnings)}}
	if op.FailureReason != "" {
		f = append(f, field{"Failure reason", op.FailureReason})
	}
	for _, e := range op.ValidationErrors {
		f = append(f, field{"Validation error", e})
	}
	return f
}

func writeDescription(w io.Writer, fields []field, op operation, details bool, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	for _, f := range fields {
		fmt.Fprintf(tw, "%s:\t%s\n", f.name, f.value)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	t := sum(op.Volumes, now)
	fmt.Fprintf(w, "\nVolumes: %d (%d completed, %d failed, %d canceled), %s of %s\n",
		len(op.Volumes), t.Completed, t.Failed, t.Canceled, byteSize(t.Done), byteSize(t.Total))
	if len(op.Volumes) == 0 {
		return nil
	}
	tbl := table{header: []string{"  PATH", "POD/PVC", "PVC", "NODE", "PHASE", "SNAPSHOT", "BYTES", "FILES", "INCREMENTAL", "DURATION"}}
	if details {
		tbl.header = append(tbl.header, "OBJECT")
	}
	for _, v := range op.Volumes {
		tbl.rows = append(tbl.rows, volumeRow(op, v, details, now))
	}
	if err := writeTable(w, tbl); err != nil {
		return err
	}
	var failed []string
	for _, v := range op.Volumes {
		if v.Message != "" && v.Phase != string(velerov1.PodVolumePhaseCompleted) {
			line := fmt.Sprintf("  %s: %s", v.Target(), v.Message)
			if details {
				line = fmt.Sprintf("  %s (%s %s): %s", v.Target(), v.Kind, v.Name, v.Message)
			}
			failed = append(failed, line)
		}
	}
	if len(failed) > 0 {
		fmt.Fprintf(w, "\nVolume errors:\n%s\n", strings.Join(failed, "\n"))
	}
	return nil
}

func volumeRow(op operation, v volume, details bool, now time.Time) []string {
	p := v.Progress
	files := "-"
	if p.TotalFiles > 0 || p.FilesDone > 0 {
		files = fmt.Sprintf("%d/%d", p.FilesDone, p.TotalFiles)
	}
	incremental := "-"
	if op.Kind == "backup" && v.terminal() {
		incremental = byteSize(v.Incremental)
	}
	duration := "-"
	if v.Start != nil {
		duration = v.Duration(now).Round(time.Second).String()
	}
	target := v.Target()
	if v.Pod == "" {
		target = v.Namespace + "/" + v.PVC
	}
	row := []string{"  " + v.Path, target, orDefault(v.PVC, "-"), orDefault(v.Node, "-"), orDefault(v.Phase, "New"),
		orDefault(v.SnapshotID, "-"), counts(p.BytesDone, p.TotalBytes), files, incremental, duration}
	if details {
		row = append(row, v.Kind+"/"+v.Name)
	}
	return row
}

func timestamp(t *metav1.Time) string {
	if t == nil {
		return "<none>"
	}
	return t.Local().Format("2006-01-02 15:04:05 -0700 MST")
}

func optionalBool(b *bool) string {
	if b == nil {
		return "<default>"
	}
	return strconv.FormatBool(*b)
}
