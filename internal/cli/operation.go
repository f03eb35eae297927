package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferry-backup/ferry/api/shared"
	velerov1 "github.com/ferry-backup/ferry/api/v1"
)

// operation is a Backup or a Restore as the CLI follows and describes it, with its volumes.
type operation struct {
	Kind             string // "backup" or "restore"
	Name             string
	Phase            string
	Start, End       *metav1.Time
	FailureReason    string
	ValidationErrors []string
	Errors, Warnings int
	Volumes          []volume
}

// Terminal reports whether the operation has ended, whatever its outcome.
func (op operation) Terminal() bool {
	switch op.Phase {
	case string(velerov1.BackupPhaseCompleted), string(velerov1.BackupPhasePartiallyFailed),
		string(velerov1.BackupPhaseFailed), string(velerov1.BackupPhaseFailedValidation), string(velerov1.BackupPhaseDeleting):
		return true
	}
	return false
}

// Duration is the time from start to completion, or to now while it runs.
func (op operation) Duration(now time.Time) time.Duration {
	switch {
	case op.Start == nil:
		return 0
	case op.End != nil:
		return op.End.Sub(op.Start.Time)
	}
	return now.Sub(op.Start.Time)
}

// moving is the verb of a volume that moves data in this operation.
func (op operation) moving() string {
	if op.Kind == "restore" {
		return "restoring"
	}
	return "uploading"
}

// loader reads an operation and its volumes from the API server.
type loader func(ctx context.Context) (operation, error)

func backupLoader(o *Options, c client.Client, name string) loader {
	return func(ctx context.Context) (operation, error) {
		b := &velerov1.Backup{}
		if err := o.get(ctx, c, "backup", name, b); err != nil {
			return operation{}, err
		}
		vols, err := backupVolumes(ctx, c, o.Namespace, name)
		if err != nil {
			return operation{}, err
		}
		s := b.Status
		return operation{Kind: "backup", Name: name, Phase: string(s.Phase), Start: s.StartTimestamp, End: s.CompletionTimestamp,
			FailureReason: s.FailureReason, ValidationErrors: s.ValidationErrors, Errors: s.Errors, Warnings: s.Warnings,
			Volumes: vols}, nil
	}
}

func restoreLoader(o *Options, c client.Client, name string) loader {
	return func(ctx context.Context) (operation, error) {
		r := &velerov1.Restore{}
		if err := o.get(ctx, c, "restore", name, r); err != nil {
			return operation{}, err
		}
		vols, err := restoreVolumes(ctx, c, o.Namespace, name)
		if err != nil {
			return operation{}, err
		}
		s := r.Status
		return operation{Kind: "restore", Name: name, Phase: string(s.Phase), Start: s.StartTimestamp, End: s.CompletionTimestamp,
			FailureReason: s.FailureReason, ValidationErrors: s.ValidationErrors, Errors: s.Errors, Warnings: s.Warnings,
			Volumes: vols}, nil
	}
}

// volumeState is what a person sees of a volume's phase while following: waiting (New,
// Accepted, Prepared), the stage of the work while InProgress (scanning, uploading, flushing,
// finalizing, restoring; uploading or restoring when the node did not say), canceling,
// completed, failed, canceled.
func volumeState(op operation, v volume) string {
	switch v.Phase {
	case "", string(velerov1.PodVolumePhaseNew), string(velerov1.PodVolumePhaseAccepted), string(velerov1.PodVolumePhasePrepared):
		return "waiting"
	case string(velerov1.PodVolumePhaseInProgress):
		if s := v.Progress.Stage; s != "" && s != shared.ProgressStageDone {
			return strings.ToLower(string(s)) // scanning, uploading, flushing, finalizing, restoring
		}
		return op.moving()
	case string(velerov1.PodVolumePhaseCanceling):
		return "canceling"
	case string(velerov1.PodVolumePhaseCompleted):
		return "completed"
	case string(velerov1.PodVolumePhaseFailed):
		return "failed"
	case string(velerov1.PodVolumePhaseCanceled):
		return "canceled"
	}
	return v.Phase
}

// rate is a volume's throughput in bytes per second: the node-agent's recent figure, else the
// average since it started; 0 when unknown or ended.
func rate(v volume, now time.Time) float64 {
	if v.terminal() || v.Start == nil {
		return 0
	}
	if v.Progress.BytesPerSecond > 0 {
		return float64(v.Progress.BytesPerSecond)
	}
	if d := v.Duration(now); d >= time.Second && v.Progress.BytesDone > 0 {
		return float64(v.Progress.BytesDone) / d.Seconds()
	}
	return 0
}

// eta is how long the rest takes at bytesPerSecond; ok is false when that cannot be said.
func eta(done, total int64, bytesPerSecond float64) (time.Duration, bool) {
	if bytesPerSecond <= 0 || total <= 0 || done >= total {
		return 0, false
	}
	return time.Duration(float64(total-done) / bytesPerSecond * float64(time.Second)).Round(time.Second), true
}

// readingBytes reports whether a volume's time left follows from its bytes: not while its
// source is still listed (no total yet), nor once every byte is read and what remains is writing
// the repository's indexes and manifests (flushing, finalizing), whose time bytes do not tell.
func readingBytes(p shared.DataMoveOperationProgress) bool {
	switch p.Stage {
	case shared.ProgressStageScanning, shared.ProgressStageFlushing, shared.ProgressStageFinalizing:
		return false
	}
	return true
}

// totals adds up the volumes: bytes done and total, the summed rate, and counts by outcome.
type totals struct {
	Done, Total                 int64
	Rate                        float64
	Completed, Failed, Canceled int
}

func sum(vols []volume, now time.Time) totals {
	var t totals
	for _, v := range vols {
		t.Done += v.Progress.BytesDone
		t.Total += v.Progress.TotalBytes
		t.Rate += rate(v, now)
		switch v.Phase {
		case string(velerov1.PodVolumePhaseCompleted):
			t.Completed++
		case string(velerov1.PodVolumePhaseFailed):
			t.Failed++
		case string(velerov1.PodVolumePhaseCanceled):
			t.Canceled++
		}
	}
	return t
}

// byteSize formats n with binary units, e.g. 12.5 MiB.
func byteSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// summary is the last line of a followed operation: phase, volumes, bytes, duration.
func summary(op operation, now time.Time) string {
	t := sum(op.Volumes, now)
	s := fmt.Sprintf("%s %s %s: %d volumes (%d completed, %d failed", titleKind(op.Kind), op.Name, op.Phase,
		len(op.Volumes), t.Completed, t.Failed)
	if t.Canceled > 0 {
		s += fmt.Sprintf(", %d canceled", t.Canceled)
	}
	return s + fmt.Sprintf("), %s of %s in %s", byteSize(t.Done), byteSize(t.Total), op.Duration(now).Round(time.Second))
}

func titleKind(kind string) string {
	if kind == "restore" {
		return "Restore"
	}
	return "Backup"
}
