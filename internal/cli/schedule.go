package cli

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
)

func newScheduleCommand(o *Options) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "schedule",
		Aliases: []string{"schedules"},
		Short:   "Create, list, describe, pause and delete schedules of backups",
	}
	cmd.AddCommand(newScheduleCreateCommand(o), newScheduleGetCommand(o), newScheduleDescribeCommand(o),
		newSchedulePauseCommand(o, true), newSchedulePauseCommand(o, false), newScheduleDeleteCommand(o))
	return cmd
}

func scheduleList() client.ObjectList { return &velerov1.ScheduleList{} }

// scheduleCreateOptions configure `ferry schedule create`.
type scheduleCreateOptions struct {
	backupCreateOptions
	Schedule                                            string
	UseOwnerReferencesInBackup, Paused, SkipImmediately bool
}

func newScheduleCreateCommand(o *Options) *cobra.Command {
	so := &scheduleCreateOptions{backupCreateOptions: backupCreateOptions{Options: o}}
	cmd := &cobra.Command{
		Use:   "create NAME --schedule CRON",
		Short: "Create a schedule that takes a backup at the times of a cron expression",
		Long: "Creates a Schedule in Ferry's namespace: ferry-server takes a Backup named <schedule>-<yyyymmddhhmmss>\n" +
			"(UTC) at each time of --schedule, with the backup flags below as its spec. A run due while the previous\n" +
			"backup of the schedule still runs is skipped; runs missed while the server was down are taken once.",
		Example: "  ferry schedule create nightly --schedule '0 1 * * *' --include-namespaces app --default-volumes-to-fs-backup --ttl 720h\n" +
			"  ferry schedule create often --schedule '@every 6h' --include-namespaces app",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if strings.TrimSpace(so.Schedule) == "" {
				return fmt.Errorf("--schedule is required: a cron expression such as '0 1 * * *', @daily or '@every 6h'")
			}
			b, err := so.backup(cmd, args[0])
			if err != nil {
				return err
			}
			s := &velerov1.Schedule{ObjectMeta: metav1.ObjectMeta{Namespace: so.Namespace, Name: args[0]},
				Spec: velerov1.ScheduleSpec{Template: b.Spec, Schedule: so.Schedule, Paused: so.Paused}}
			if cmd.Flags().Changed("use-owner-references-in-backup") {
				s.Spec.UseOwnerReferencesInBackup = ptr.To(so.UseOwnerReferencesInBackup)
			}
			if cmd.Flags().Changed("skip-immediately") {
				s.Spec.SkipImmediately = ptr.To(so.SkipImmediately)
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			return so.run(cmd.Context(), c, s)
		},
	}
	so.addSpecFlags(cmd)
	f := cmd.Flags()
	f.StringVar(&so.Schedule, "schedule", "", "when to back up: a cron expression in UTC ('0 1 * * *'), @daily, '@every 6h'")
	f.BoolVar(&so.UseOwnerReferencesInBackup, "use-owner-references-in-backup", false,
		"make the schedule the owner of its Backups: deleting it deletes their objects (never their data)")
	f.BoolVar(&so.Paused, "paused", false, "create it paused (ferry schedule unpause starts it)")
	f.BoolVar(&so.SkipImmediately, "skip-immediately", false, "skip the run that is due at once; the first is at the next cron time")
	return cmd
}

func (so *scheduleCreateOptions) run(ctx context.Context, c client.Client, s *velerov1.Schedule) error {
	if l := s.Spec.Template.StorageLocation; l != "" {
		if err := so.get(ctx, c, "backup storage location", l, &velerov1.BackupStorageLocation{}); err != nil {
			return fmt.Errorf("--storage-location: %w; nothing was created", err)
		}
	}
	if err := c.Create(ctx, s); err != nil {
		return fmt.Errorf("create schedule %s/%s: %w", s.Namespace, s.Name, err)
	}
	state := "its backups are named " + s.Name + "-<yyyymmddhhmmss>"
	if s.Spec.Paused {
		state = "paused; ferry schedule unpause " + s.Name + " starts it"
	}
	_, err := fmt.Fprintf(so.Out, "Schedule %s created (%s); check it with: ferry schedule describe %s\n", s.Name, state, s.Name)
	return err
}

func newScheduleGetCommand(o *Options) *cobra.Command {
	return getCommand[velerov1.Schedule, *velerov1.Schedule]{kind: "schedule", short: "List schedules, or show the named ones",
		newList: scheduleList, items: func(l client.ObjectList) *[]velerov1.Schedule { return &l.(*velerov1.ScheduleList).Items },
		table: scheduleTable}.command(o)
}

func scheduleTable(items []velerov1.Schedule, wide bool, now time.Time) table {
	t := table{header: []string{"NAME", "STATUS", "SCHEDULE", "LAST BACKUP", "AGE", "PAUSED"}}
	if wide {
		t.header = append(t.header, "STORAGE LOCATION", "NAMESPACES", "TTL", "LAST SKIPPED")
	}
	for _, s := range items {
		row := []string{s.Name, orDefault(string(s.Status.Phase), "New"), s.Spec.Schedule, ago(s.Status.LastBackup, now),
			age(s.CreationTimestamp, now), fmt.Sprint(s.Spec.Paused)}
		if wide {
			tpl := s.Spec.Template
			ttl := "<default>"
			if tpl.TTL.Duration > 0 {
				ttl = tpl.TTL.Duration.String()
			}
			row = append(row, orDefault(tpl.StorageLocation, "<default>"), orDefault(strings.Join(tpl.IncludedNamespaces, ","), "*"),
				ttl, ago(s.Status.LastSkipped, now))
		}
		t.rows = append(t.rows, row)
	}
	return t
}

// ago is how long before now t was, or <never>.
func ago(t *metav1.Time, now time.Time) string {
	if t == nil {
		return "<never>"
	}
	return age(*t, now) + " ago"
}

func newScheduleDescribeCommand(o *Options) *cobra.Command {
	return &cobra.Command{
		Use:               "describe NAME",
		Short:             "Show a schedule: when it runs, what it backs up, and its latest backups",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeNames(o, scheduleList, true),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			s := &velerov1.Schedule{}
			if err := o.get(cmd.Context(), c, "schedule", args[0], s); err != nil {
				return err
			}
			backups := &velerov1.BackupList{}
			if err := c.List(cmd.Context(), backups, client.InNamespace(o.Namespace), client.MatchingLabels{velerov1.LabelScheduleName: s.Name}); err != nil {
				return fmt.Errorf("list the backups of schedule %s: %w", s.Name, err)
			}
			return describeSchedule(o.Out, s, backups.Items, time.Now())
		},
	}
}

func describeSchedule(w io.Writer, s *velerov1.Schedule, backups []velerov1.Backup, now time.Time) error {
	tpl := s.Spec.Template
	ttl := "<server default>"
	if tpl.TTL.Duration > 0 {
		ttl = tpl.TTL.Duration.String()
	}
	p := func(format string, a ...any) { fmt.Fprintf(w, format+"\n", a...) }
	p("Name:             %s", s.Name)
	p("Namespace:        %s", s.Namespace)
	p("Phase:            %s", orDefault(string(s.Status.Phase), "New"))
	p("Schedule:         %s", s.Spec.Schedule)
	p("Paused:           %t", s.Spec.Paused)
	p("Last backup:      %s", ago(s.Status.LastBackup, now))
	p("Last skipped:     %s", ago(s.Status.LastSkipped, now))
	if len(s.Status.ValidationErrors) > 0 {
		p("Validation errors:")
		for _, e := range s.Status.ValidationErrors {
			p("  - %s", e)
		}
	}
	p("")
	p("Backup template:")
	p("  Namespaces:       %s (excluded: %s)", orDefault(strings.Join(tpl.IncludedNamespaces, ", "), "*"), orNone(strings.Join(tpl.ExcludedNamespaces, ", ")))
	p("  Selector:         %s", selectorText(tpl.LabelSelector))
	p("  Storage location: %s", orDefault(tpl.StorageLocation, "<default>"))
	p("  TTL:              %s", ttl)
	p("  File system:      %s", boolText(tpl.DefaultVolumesToFsBackup, "every pod volume", "volumes the pods' annotations name"))
	p("  Data mover:       %s", boolText(tpl.SnapshotMoveData, "CSI snapshots moved into the repository", "no"))
	p("")
	// Latest first; their names end in the time they are for, which orders those of one second.
	slices.SortFunc(backups, func(a, b velerov1.Backup) int {
		if c := b.CreationTimestamp.Compare(a.CreationTimestamp.Time); c != 0 {
			return c
		}
		return strings.Compare(b.Name, a.Name)
	})
	if len(backups) == 0 {
		p("Backups: none yet")
		return nil
	}
	p("Backups (latest first):")
	return writeTable(w, backupTable(backups[:min(len(backups), 10)], false, now))
}

func boolText(v *bool, yes, no string) string {
	if v != nil && *v {
		return yes
	}
	return no
}

func newSchedulePauseCommand(o *Options, pause bool) *cobra.Command {
	use, short, done := "pause NAME...", "Stop schedules from taking backups", "paused"
	if !pause {
		use, short, done = "unpause NAME...", "Let paused schedules take backups again (a run missed while paused is taken once)", "unpaused"
	}
	return &cobra.Command{
		Use:               use,
		Short:             short,
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: completeNames(o, scheduleList, false),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			for _, name := range args {
				s := &velerov1.Schedule{}
				if err := o.get(cmd.Context(), c, "schedule", name, s); err != nil {
					return err
				}
				if s.Spec.Paused == pause {
					fmt.Fprintf(o.Out, "Schedule %s is already %s\n", name, done)
					continue
				}
				patch := client.MergeFrom(s.DeepCopy())
				s.Spec.Paused = pause
				if err := c.Patch(cmd.Context(), s, patch); err != nil {
					return fmt.Errorf("schedule %s: %w", name, err)
				}
				fmt.Fprintf(o.Out, "Schedule %s %s\n", name, done)
			}
			return nil
		},
	}
}

func newScheduleDeleteCommand(o *Options) *cobra.Command {
	var confirm bool
	cmd := &cobra.Command{
		Use:   "delete NAME...",
		Short: "Delete schedules; the backups they took are kept",
		Long: "Deletes the Schedule objects. The backups they took stay, with their data (ferry backup delete\n" +
			"deletes those); with useOwnerReferencesInBackup, Kubernetes deletes their Backup objects too,\n" +
			"never their data, and backup sync brings them back.",
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: completeNames(o, scheduleList, false),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			schedules := make([]*velerov1.Schedule, len(args))
			for i, name := range args {
				schedules[i] = &velerov1.Schedule{}
				if err := o.get(cmd.Context(), c, "schedule", name, schedules[i]); err != nil {
					return fmt.Errorf("%w; nothing was deleted", err)
				}
			}
			if !confirm && !o.confirmed(fmt.Sprintf("Delete schedule(s) %s (their backups are kept)", strings.Join(args, ", "))) {
				_, err := fmt.Fprintln(o.Out, "Nothing deleted.")
				return err
			}
			for _, s := range schedules {
				if err := client.IgnoreNotFound(c.Delete(cmd.Context(), s)); err != nil {
					return fmt.Errorf("delete schedule %s: %w", s.Name, err)
				}
				fmt.Fprintf(o.Out, "Schedule %s deleted; its backups are kept\n", s.Name)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&confirm, "confirm", false, "do not ask for confirmation")
	return cmd
}
