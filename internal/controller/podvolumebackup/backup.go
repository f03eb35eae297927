package podvolumebackup

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/metrics"
	"github.com/ferry-backup/ferry/internal/operation"
	"github.com/ferry-backup/ferry/internal/podvolume"
	"github.com/ferry-backup/ferry/internal/repoaccess"
	"github.com/ferry-backup/ferry/internal/repository"
	"github.com/ferry-backup/ferry/internal/uploader"
)

// operation describes the backup of pvb for the Runner.
func (r *Reconciler) operation(pvb *velerov1.PodVolumeBackup) operation.Spec {
	var result uploader.BackupResult
	return operation.Spec{
		Name:     operationName(client.ObjectKeyFromObject(pvb)),
		Timeout:  operation.Timeout(pvb.Spec.OperationTimeout),
		Deadline: operation.Deadline(pvb.Status.AcceptedTimestamp, operation.Timeout(pvb.Spec.OperationTimeout), r.Clock.Now()),
		Waiting:  func(ctx context.Context) { r.reporter().Waiting(ctx, pvb, r.Runner.Slots(), r.Node) },
		Work: func(ctx context.Context) error {
			var err error
			result, err = r.backup(ctx, pvb)
			return err
		},
		Done: func(ctx context.Context, err error) error {
			return r.done(ctx, pvb, result, err)
		},
	}
}

// backup runs one backup with a slot held.
// errResticBackup is the failure of a backup asked of the restic uploader: a Kopia snapshot
// recorded as restic's could not be restored by Velero.
var errResticBackup = errors.New("uploaderType restic: Ferry makes new backups with Kopia only (restic backups are deprecated in Velero; " +
	"install Velero with --uploader-type=kopia); restores of earlier restic backups are supported")

func (r *Reconciler) backup(ctx context.Context, pvb *velerov1.PodVolumeBackup) (uploader.BackupResult, error) {
	logger := log.FromContext(ctx).WithValues("podVolumeBackup", pvb.Namespace+"/"+pvb.Name, "node", r.Node)
	if err := r.reporter().Start(ctx, pvb, pvb.Status.StartTimestamp, pvb.Status.Attempts); err != nil {
		return uploader.BackupResult{}, err
	}
	if pvb.Spec.UploaderType == velerov1.UploaderTypeRestic {
		return uploader.BackupResult{}, errResticBackup
	}
	vol, err := r.Volumes.Find(ctx, pvb.Spec.Pod, pvb.Spec.Volume)
	if err != nil {
		return uploader.BackupResult{}, err
	}
	if err := operation.PatchStatus(ctx, r.Client, pvb, operation.Status{Path: vol.Dir}); err != nil {
		return uploader.BackupResult{}, err
	}
	r.Recorder.Eventf(pvb, corev1.EventTypeNormal, "Started", "backing up %s", vol.Dir)
	rep, release, err := r.Repositories.OpenFor(repository.WithLogger(ctx, logger), pvb.Spec.BackupStorageLocation, pvb.Spec.Pod.Namespace, repoaccess.ForBackup)
	if err != nil {
		return uploader.BackupResult{}, err
	}
	defer release()
	defer metrics.ForgetProgress(metrics.KindBackup, pvb.Namespace, pvb.Name)
	opts := uploader.BackupOptions{
		Source:   vol.Source,
		Parallel: r.parallel(pvb),
		Tags:     tags(pvb, vol.ClaimName),
		Progress: func(p uploader.Progress) {
			metrics.SetProgress(metrics.KindBackup, pvb.Namespace, pvb.Name, p.Status())
			_ = operation.PatchStatus(ctx, r.Client, pvb, operation.Status{Progress: operation.Ptr(p.Status())}) // next tick retries
		},
	}
	if rep.Location().Namespace != "" { // Velero's layout: the snapshot Velero's agent would write
		opts = opts.AsVelero(uploader.VeleroPodVolumeRequester, veleroRealSource(pvb, vol))
	}
	logger.Info("backup started", "path", vol.Dir, "repository", rep.Location().String(), "source", opts.Source)
	return uploader.Backup(ctx, rep, vol.Dir, opts)
}

// veleroRealSource is the source Velero names a pod volume by: <namespace>/<pod>/<claim>, the
// claim from the velero.io/pvc-name annotation Velero's server sets (or, on a PodVolumeBackup
// without it, a persistentVolumeClaim volume's claim), else <namespace>/<pod>/<volume>.
func veleroRealSource(pvb *velerov1.PodVolumeBackup, vol podvolume.Volume) string {
	name := pvb.Annotations[velerov1.AnnotationPVCName]
	if name == "" {
		name = pvb.Spec.Volume
		for _, v := range vol.Pod.Spec.Volumes {
			if v.Name == pvb.Spec.Volume && v.PersistentVolumeClaim != nil {
				name = v.PersistentVolumeClaim.ClaimName
			}
		}
	}
	return pvb.Spec.Pod.Namespace + "/" + pvb.Spec.Pod.Name + "/" + name
}

// done records the outcome and reports whether it did. A backup stopped because the
// node-agent is shutting down stays InProgress: the restarted agent resumes it from its
// checkpoint.
func (r *Reconciler) done(ctx context.Context, pvb *velerov1.PodVolumeBackup, res uploader.BackupResult, err error) error {
	switch {
	case err == nil:
		metrics.Bytes.WithLabelValues(metrics.KindBackup).Add(float64(res.Stats.Bytes))
		metrics.Files.WithLabelValues(metrics.KindBackup).Add(float64(res.Stats.Files))
		msg := fmt.Sprintf("snapshot %s: %d files, %d bytes, %d bytes uploaded in %s",
			res.SnapshotID, res.Stats.Files, res.Stats.Bytes, res.Stats.UploadedBytes, res.Stats.Duration.Round(1e6))
		if res.Stats.Errors > 0 {
			msg += fmt.Sprintf("; %d entries could not be read: %v", res.Stats.Errors, res.Stats.ErrorMessages)
		}
		if n := res.Stats.NotPreserved; n.Any() {
			msg += "; metadata not preserved: " + n.String()
		}
		return r.finish(ctx, pvb, velerov1.PodVolumePhaseCompleted, msg, &res)
	case errors.Is(err, operation.ErrCanceled):
		return r.finish(ctx, pvb, velerov1.PodVolumePhaseCanceled, "canceled on request (spec.cancel); a checkpoint was kept", nil)
	case errors.Is(err, context.Canceled):
		log.FromContext(ctx).Info("backup interrupted by shutdown; it resumes when the node-agent restarts",
			"podVolumeBackup", pvb.Namespace+"/"+pvb.Name)
		return operation.ErrNotRecorded
	default:
		return r.finish(ctx, pvb, velerov1.PodVolumePhaseFailed, err.Error(), nil)
	}
}

// finish writes a terminal phase; a completed backup also gets its snapshot and final progress.
func (r *Reconciler) finish(ctx context.Context, pvb *velerov1.PodVolumeBackup, phase velerov1.PodVolumePhase, msg string, res *uploader.BackupResult) error {
	var extra *operation.Status
	if res != nil {
		extra = &operation.Status{SnapshotID: res.SnapshotID, IncrementalBytes: operation.Ptr(res.Stats.UploadedBytes), Progress: operation.Ptr(res.Stats.Progress())}
		now := metav1.NewTime(r.Clock.Now().Truncate(time.Second))
		var conditions []metav1.Condition
		if res.Stats.Errors > 0 {
			// The snapshot lacks these entries: the Backup ends PartiallyFailed because of it.
			conditions = append(conditions, metav1.Condition{Type: velerov1.ConditionEntriesNotBackedUp, Status: metav1.ConditionTrue,
				Reason: "UnreadableOrSpecialEntries", LastTransitionTime: now,
				Message: fmt.Sprintf("%d entries not backed up: %s", res.Stats.Errors, operation.JoinFirst(res.Stats.ErrorMessages, 20))})
		}
		if n := res.Stats.NotPreserved; n.Any() {
			// Content kept, some metadata not: a warning, not a partial backup.
			conditions = append(conditions, metav1.Condition{Type: velerov1.ConditionMetadataNotPreserved, Status: metav1.ConditionTrue,
				Reason: "LinksAttributesOrNames", LastTransitionTime: now, Message: n.String()})
		}
		extra.Conditions = conditions
	}
	return r.reporter().Finish(ctx, pvb, phase, msg, extra, pvb.Status.StartTimestamp)
}

func (r *Reconciler) reporter() operation.Reporter {
	return operation.Reporter{Client: r.Client, Recorder: r.Recorder, Kind: metrics.KindBackup, Now: r.Clock.Now}
}

// parallel is spec.uploaderSettings.ParallelFilesUpload, else the ConfigMap's parallelFilesUpload.
func (r *Reconciler) parallel(pvb *velerov1.PodVolumeBackup) int {
	if s := pvb.Spec.UploaderSettings; s != nil {
		if n, err := strconv.Atoi((*s)["ParallelFilesUpload"]); err == nil && n > 0 {
			return n
		}
	}
	return r.Config().ParallelFilesUpload
}

// tags identify the snapshot: the PodVolumeBackup's own tags plus where the data came from.
func tags(pvb *velerov1.PodVolumeBackup, claim string) map[string]string {
	t := map[string]string{
		"podvolumebackup": pvb.Name, "ns": pvb.Spec.Pod.Namespace, "pod": pvb.Spec.Pod.Name,
		"volume": pvb.Spec.Volume, "backup-storage-location": pvb.Spec.BackupStorageLocation,
	}
	if claim != "" {
		t["pvc"] = claim
	}
	if b := pvb.Labels[velerov1.LabelBackupName]; b != "" {
		t["backup"] = b
	}
	for k, v := range pvb.Spec.Tags {
		t[k] = v
	}
	return t
}
