package cluster

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferry-backup/ferry/api/shared"
	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/test/harness"
)

// The real server runs a Schedule: its Backups are created from the template (its ttl gives
// their expiry), complete one after the other without overlapping, and the schedule records the
// last one. "@every 2s" stands for a cron time, which would be a minute away at best.
func TestScheduleTakesBackupsOneAtATime(t *testing.T) {
	c := harness.New(t)
	c.StartServer()
	node := c.StartNode("node-a")
	app := c.Namespace("app")
	pod := c.CreatePod(node, app, "web", harness.VolumeSpec{Name: "data", Claim: "web-data"})
	if err := harness.FillVolume(pod.Dirs["data"], 10, 4<<20, 7); err != nil {
		t.Fatal(err)
	}
	s := &velerov1.Schedule{ObjectMeta: metav1.ObjectMeta{Namespace: c.Install, Name: "often"}, Spec: velerov1.ScheduleSpec{
		Schedule: "@every 2s",
		Template: velerov1.BackupSpec{IncludedNamespaces: []string{app}, DefaultVolumesToFsBackup: ptr.To(true), TTL: shared.Duration{Duration: 48 * time.Hour}},
	}}
	ctx := context.Background()
	if err := c.Client.Create(ctx, s); err != nil {
		t.Fatal(err)
	}

	var done []velerov1.Backup
	c.Eventually(3*time.Minute, func() (bool, string) {
		list := &velerov1.BackupList{}
		if err := c.Client.List(ctx, list, client.InNamespace(c.Install), client.MatchingLabels{velerov1.LabelScheduleName: s.Name}); err != nil {
			return false, err.Error()
		}
		done = done[:0]
		var phases []string
		for _, b := range list.Items {
			phases = append(phases, b.Name+": "+string(b.Status.Phase))
			if b.Status.Phase == velerov1.BackupPhaseCompleted {
				done = append(done, b)
			}
		}
		return len(done) >= 2, fmt.Sprintf("backups of the schedule: %v", phases)
	})
	slices.SortFunc(done, func(a, b velerov1.Backup) int { return strings.Compare(a.Name, b.Name) })
	for i, b := range done {
		if !strings.HasPrefix(b.Name, "often-") || b.Spec.TTL.Duration != 48*time.Hour ||
			b.Status.Expiration == nil || !b.Status.Expiration.Equal(ptr.To(metav1.NewTime(b.Status.StartTimestamp.Add(48*time.Hour)))) {
			t.Errorf("backup %s: ttl %s, start %v, expiration %v", b.Name, b.Spec.TTL.Duration, b.Status.StartTimestamp, b.Status.Expiration)
		}
		if i > 0 && b.CreationTimestamp.Before(done[i-1].Status.CompletionTimestamp) {
			t.Errorf("backup %s was created at %s, before %s completed at %s", b.Name, b.CreationTimestamp, done[i-1].Name, done[i-1].Status.CompletionTimestamp)
		}
	}
	if err := c.Client.Get(ctx, client.ObjectKeyFromObject(s), s); err != nil {
		t.Fatal(err)
	}
	if s.Status.Phase != velerov1.SchedulePhaseEnabled || s.Status.LastBackup == nil {
		t.Fatalf("schedule status %+v", s.Status)
	}

	// A restore of the schedule restores its latest Completed backup; of a schedule without
	// backups, it fails validation naming it.
	pause := client.MergeFrom(s.DeepCopy())
	s.Spec.Paused = true
	if err := c.Client.Patch(ctx, s, pause); err != nil {
		t.Fatal(err)
	}
	c.Eventually(time.Minute, func() (bool, string) {
		list := &velerov1.BackupList{}
		if err := c.Client.List(ctx, list, client.InNamespace(c.Install), client.MatchingLabels{velerov1.LabelScheduleName: s.Name}); err != nil {
			return false, err.Error()
		}
		for _, b := range list.Items {
			if !b.Status.Phase.Ended() {
				return false, "backup " + b.Name + " still " + string(b.Status.Phase)
			}
		}
		latest := ""
		for _, b := range list.Items {
			if b.Status.Phase == velerov1.BackupPhaseCompleted && b.Name > latest {
				latest = b.Name
			}
		}
		done = []velerov1.Backup{{ObjectMeta: metav1.ObjectMeta{Name: latest}}}
		return true, ""
	})
	rs := &velerov1.Restore{ObjectMeta: metav1.ObjectMeta{Namespace: c.Install, Name: "from-often"}, Spec: velerov1.RestoreSpec{ScheduleName: s.Name}}
	none := &velerov1.Restore{ObjectMeta: metav1.ObjectMeta{Namespace: c.Install, Name: "from-never"}, Spec: velerov1.RestoreSpec{ScheduleName: "never"}}
	for _, r := range []*velerov1.Restore{rs, none} {
		if err := c.Client.Create(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	c.Eventually(2*time.Minute, func() (bool, string) {
		for _, r := range []*velerov1.Restore{rs, none} {
			if err := c.Client.Get(ctx, client.ObjectKeyFromObject(r), r); err != nil {
				return false, err.Error()
			}
		}
		return rs.Status.Phase == velerov1.RestorePhaseCompleted && none.Status.Phase == velerov1.RestorePhaseFailedValidation,
			fmt.Sprintf("restore of the schedule: %s (backup %q, %s); of a schedule without backups: %s",
				rs.Status.Phase, rs.Spec.BackupName, rs.Status.FailureReason, none.Status.Phase)
	})
	if rs.Spec.BackupName != done[0].Name {
		t.Errorf("restore of schedule %s restored backup %q, want its latest Completed one %s", s.Name, rs.Spec.BackupName, done[0].Name)
	}
	if len(none.Status.ValidationErrors) != 1 || !strings.Contains(none.Status.ValidationErrors[0], "spec.scheduleName: schedule never has no Completed backup") {
		t.Errorf("restore of a schedule without backups: %v", none.Status.ValidationErrors)
	}
}
