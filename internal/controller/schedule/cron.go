package schedule

import (
	"fmt"
	"time"

	cron "github.com/robfig/cron/v3"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
)

// nameTimeFormat is the UTC time in the names of scheduled Backups (Velero's format).
const nameTimeFormat = "20060102150405"

// BackupName is the name of the Backup that schedule creates for its run due at t:
// <schedule>-<YYYYMMDDhhmmss>, in UTC.
func BackupName(schedule string, t time.Time) string {
	return schedule + "-" + t.UTC().Format(nameTimeFormat)
}

// maxNameLength keeps the names of a schedule's Backups within a label value, where the
// server and the node-agents put them (velero.io/backup-name).
const maxNameLength = validation.LabelValueMaxLength - len("-") - len(nameTimeFormat)

// parse reads a cron expression the way Velero does (five fields, descriptors, @every), with
// the parser's panics on some malformed time zones turned into errors.
func parse(spec string) (s cron.Schedule, err error) {
	defer func() {
		if r := recover(); r != nil {
			s, err = nil, fmt.Errorf("%v", r)
		}
	}()
	return cron.ParseStandard(spec)
}

// validate returns the schedule's parsed cron expression, or the problems that keep it from
// running, each naming its field.
func validate(s *velerov1.Schedule, now time.Time) (cron.Schedule, []string) {
	var problems []string
	sched, err := parse(s.Spec.Schedule)
	switch {
	case err != nil:
		problems = append(problems, fmt.Sprintf("spec.schedule: %q is not a cron expression: %v", s.Spec.Schedule, err))
	case sched.Next(now.UTC()).IsZero():
		problems = append(problems, fmt.Sprintf("spec.schedule: %q never comes due", s.Spec.Schedule))
	}
	if len(s.Name) > maxNameLength {
		problems = append(problems, fmt.Sprintf("metadata.name: at most %d characters, so that the names of its Backups "+
			"(<name>-YYYYMMDDhhmmss) fit in the velero.io/backup-name label", maxNameLength))
	}
	template := field.NewPath("spec", "template")
	errs := metav1validation.ValidateLabels(s.Spec.Template.Labels, template.Child("metadata", "labels"))
	opts := metav1validation.LabelSelectorValidationOptions{}
	if sel := s.Spec.Template.LabelSelector; sel != nil {
		errs = append(errs, metav1validation.ValidateLabelSelector(sel, opts, template.Child("labelSelector"))...)
	}
	for i, sel := range s.Spec.Template.OrLabelSelectors {
		errs = append(errs, metav1validation.ValidateLabelSelector(sel, opts, template.Child("orLabelSelectors").Index(i))...)
	}
	for _, e := range errs {
		problems = append(problems, e.Error())
	}
	if len(problems) > 0 {
		return nil, problems
	}
	return sched, nil
}

// latestDue returns the latest time of sched in (after, now], or the zero time when none is:
// after a downtime across several times, the last one stands for them all. The result depends
// only on after and now's place among the times, so a pass repeated after a crash finds the
// same time, and so the same Backup name.
func latestDue(sched cron.Schedule, after, now time.Time) time.Time {
	after, now = after.UTC(), now.UTC()
	first := sched.Next(after)
	if first.IsZero() || first.After(now) {
		return time.Time{}
	}
	if every, ok := sched.(cron.ConstantDelaySchedule); ok {
		// Times counted from after, not from the clock: add whole delays to the first.
		return first.Add(now.Sub(first) / every.Delay * every.Delay)
	}
	// The times of a cron expression are fixed points of the calendar: start from a moment
	// shortly before now that still has one ahead of it, found by doubling the distance back,
	// instead of walking every time since after.
	from := after
	for back := time.Minute; back < 100*365*24*time.Hour && now.Add(-back).After(after); back *= 2 {
		if t := sched.Next(now.Add(-back)); !t.IsZero() && !t.After(now) {
			from = now.Add(-back)
			break
		}
	}
	due := sched.Next(from)
	for {
		next := sched.Next(due)
		if next.IsZero() || next.After(now) {
			return due
		}
		due = next
	}
}

// baseline is the moment the schedule's next time is counted from: its last Backup, else its
// creation, or its last skipped run when that is later (Velero's rule).
func baseline(s *velerov1.Schedule) time.Time {
	t := s.CreationTimestamp.Time
	if s.Status.LastBackup != nil {
		t = s.Status.LastBackup.Time
	}
	if s.Status.LastSkipped != nil && s.Status.LastSkipped.After(t) {
		t = s.Status.LastSkipped.Time
	}
	return t.UTC()
}
