package onchange

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
)

func TestStatusHolds(t *testing.T) {
	at := metav1.NewTime(time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC))
	b := &velerov1.Backup{Status: velerov1.BackupStatus{Phase: velerov1.BackupPhaseInProgress, StartTimestamp: &at,
		PodVolumeBackups: &velerov1.VolumeOperationCounts{Total: 3, Completed: 1}}}
	for _, tc := range []struct {
		name   string
		fields map[string]any
		want   bool
	}{
		{"same values", map[string]any{"phase": velerov1.BackupPhaseInProgress, "startTimestamp": at,
			"podVolumeBackups": velerov1.VolumeOperationCounts{Total: 3, Completed: 1}}, true},
		{"zero values of absent fields", map[string]any{"failureReason": "", "errors": 0,
			"podVolumeBackups": velerov1.VolumeOperationCounts{Total: 3, Completed: 1, Failed: 0}}, true},
		{"a changed count", map[string]any{"podVolumeBackups": velerov1.VolumeOperationCounts{Total: 3, Completed: 2}}, false},
		{"a new field", map[string]any{"failureReason": "disk full"}, false},
		{"a changed phase", map[string]any{"phase": velerov1.BackupPhaseCompleted}, false},
		{"a changed time", map[string]any{"startTimestamp": metav1.NewTime(at.Add(time.Second))}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := StatusHolds(b, tc.fields)
			if err != nil || got != tc.want {
				t.Fatalf("StatusHolds = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}
