package podvolumerestore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/ferry-backup/ferry/api/shared"
	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/metrics"
	"github.com/ferry-backup/ferry/internal/operation"
	"github.com/ferry-backup/ferry/internal/repoaccess"
	"github.com/ferry-backup/ferry/internal/repository"
	"github.com/ferry-backup/ferry/internal/uploader"
)

// errInterrupted is the failure of a restore whose node-agent stopped while it ran.
var errInterrupted = errors.New("interrupted: the node-agent stopped while this restore ran")

func (r *Reconciler) operation(pvr *velerov1.PodVolumeRestore) operation.Spec {
	var stats uploader.ArchiveStats
	return operation.Spec{
		Name:     operationName(client.ObjectKeyFromObject(pvr)),
		Timeout:  operation.Timeout(pvr.Spec.OperationTimeout),
		Deadline: operation.Deadline(pvr.Status.AcceptedTimestamp, operation.Timeout(pvr.Spec.OperationTimeout), r.Clock.Now()),
		Waiting:  func(ctx context.Context) { r.reporter().Waiting(ctx, pvr, r.Runner.Slots(), r.Node) },
		Work: func(ctx context.Context) error {
			var err error
			stats, err = r.restore(ctx, pvr)
			return err
		},
		Done: func(ctx context.Context, err error) error {
			return r.done(ctx, pvr, stats, err)
		},
	}
}

func (r *Reconciler) restore(ctx context.Context, pvr *velerov1.PodVolumeRestore) (uploader.ArchiveStats, error) {
	logger := log.FromContext(ctx).WithValues("podVolumeRestore", pvr.Namespace+"/"+pvr.Name, "node", r.Node)
	ctx = log.IntoContext(ctx, logger)
	earlier := pvr.Status.Attempts // Start writes the new count into pvr
	if err := r.reporter().Start(ctx, pvr, pvr.Status.StartTimestamp, earlier); err != nil {
		return uploader.ArchiveStats{}, err
	}
	vol, err := r.Volumes.Find(ctx, pvr.Spec.Pod, pvr.Spec.Volume)
	if err != nil {
		return uploader.ArchiveStats{}, err
	}
	if earlier > 0 && !heldByRestoreWait(vol.Pod) {
		// An earlier attempt was interrupted, and the pod's containers may use what it wrote.
		return uploader.ArchiveStats{}, fmt.Errorf("%w (attempt %d); the volume may hold a partial restore and its pod may be using it, so it is not restored again over live data: restore again into a new pod", errInterrupted, earlier)
	}
	r.Recorder.Eventf(pvr, corev1.EventTypeNormal, "Started", "restoring snapshot %s into %s", pvr.Spec.SnapshotID, vol.Dir)
	var st uploader.ArchiveStats
	defer metrics.ForgetProgress(metrics.KindRestore, pvr.Namespace, pvr.Name)
	if pvr.Spec.UploaderType == velerov1.UploaderTypeRestic {
		st, err = r.restoreRestic(ctx, pvr, vol.Dir)
	} else {
		st.RestoreStats, err = r.restoreKopia(ctx, pvr, vol.Dir)
	}
	if err != nil {
		return st, err
	}
	if !waitsForVelero(vol.Pod) {
		return st, nil
	}
	return st, markDone(vol.Dir, pvr)
}

// restoreKopia restores a snapshot of Ferry's or Velero's Kopia repository into dir.
func (r *Reconciler) restoreKopia(ctx context.Context, pvr *velerov1.PodVolumeRestore, dir string) (uploader.RestoreStats, error) {
	logger := log.FromContext(ctx)
	rep, release, err := r.Repositories.OpenFor(repository.WithLogger(ctx, logger), pvr.Spec.BackupStorageLocation, sourceNamespace(pvr), repoaccess.ForRestore)
	if err != nil {
		return uploader.RestoreStats{}, err
	}
	defer release()
	logger.Info("restore started", "path", dir, "snapshotID", pvr.Spec.SnapshotID, "repository", rep.Location().String())
	return uploader.Restore(ctx, rep, pvr.Spec.SnapshotID, dir, uploader.RestoreOptions{
		WriteSparseFiles: setting(pvr, "WriteSparseFiles") == "true",
		Parallel:         r.parallel(pvr),
		Progress:         r.progress(ctx, pvr),
	})
}

// progress writes a running restore's progress into its status.
func (r *Reconciler) progress(ctx context.Context, pvr *velerov1.PodVolumeRestore) func(uploader.Progress) {
	return func(p uploader.Progress) {
		metrics.SetProgress(metrics.KindRestore, pvr.Namespace, pvr.Name, p.Status())
		_ = operation.PatchStatus(ctx, r.Client, pvr, operation.Status{Progress: operation.Ptr(p.Status())}) // the next tick retries
	}
}

// sourceNamespace is the namespace the volume was backed up from, whose repository holds the
// snapshot in Velero's layout: spec.sourceNamespace (Velero sets it; it differs from the pod's
// namespace under a namespace mapping), else the pod's.
func sourceNamespace(pvr *velerov1.PodVolumeRestore) string {
	if pvr.Spec.SourceNamespace != "" {
		return pvr.Spec.SourceNamespace
	}
	return pvr.Spec.Pod.Namespace
}

// heldByRestoreWait reports whether the pod's containers wait for the restore: Velero's
// restore-wait init container has not finished, so nothing but the restore touched the volume.
func heldByRestoreWait(pod *corev1.Pod) bool {
	for _, st := range pod.Status.InitContainerStatuses {
		if st.Name == restoreWait {
			return st.State.Terminated == nil
		}
	}
	return false
}

// waitsForVelero reports whether the pod has Velero's restore-wait init container.
func waitsForVelero(pod *corev1.Pod) bool {
	for _, c := range pod.Spec.InitContainers {
		if c.Name == restoreWait {
			return true
		}
	}
	return false
}

// markDone writes .velero/<restore UID> into the volume: Velero's restore-wait init container
// waits for that file before the restored pod's containers start.
func markDone(dir string, pvr *velerov1.PodVolumeRestore) error {
	for _, ref := range pvr.OwnerReferences {
		if ref.Kind != "Restore" {
			continue
		}
		// Written beneath the volume's open root: a symlink the pod planted at .velero is replaced,
		// never followed.
		if err := uploader.WriteBeneath(dir, ".velero/"+string(ref.UID), nil); err != nil {
			return fmt.Errorf("write the restore marker: %w", err)
		}
	}
	return nil
}

func (r *Reconciler) done(ctx context.Context, pvr *velerov1.PodVolumeRestore, st uploader.ArchiveStats, err error) error {
	switch {
	case err == nil:
		metrics.Bytes.WithLabelValues(metrics.KindRestore).Add(float64(st.Bytes))
		metrics.Files.WithLabelValues(metrics.KindRestore).Add(float64(st.Files))
		msg := fmt.Sprintf("restored %d files, %d directories, %d symlinks, %d bytes in %s",
			st.Files, st.Dirs, st.Symlinks, st.Bytes, st.Duration.Round(1e6))
		if n := st.NotRestored; n.Count > 0 {
			msg += fmt.Sprintf("; %d entries not restored (FIFOs, devices, sockets, hard links are not created in volumes): %s",
				n.Count, strings.Join(n.First, ", "))
			r.Recorder.Eventf(pvr, corev1.EventTypeWarning, "NotRestored", "%d entries not restored: %s", n.Count, strings.Join(n.First, ", "))
		}
		return r.finish(ctx, pvr, velerov1.PodVolumePhaseCompleted, msg, &st.RestoreStats)
	case errors.Is(err, operation.ErrCanceled):
		return r.finish(ctx, pvr, velerov1.PodVolumePhaseCanceled, "canceled on request (spec.cancel); the volume holds a partial restore", nil)
	case errors.Is(err, context.Canceled):
		log.FromContext(ctx).Info("restore interrupted by shutdown; the restarted node-agent runs it again if its pod still waits in restore-wait, else fails it",
			"podVolumeRestore", pvr.Namespace+"/"+pvr.Name)
		return operation.ErrNotRecorded
	default:
		return r.finish(ctx, pvr, velerov1.PodVolumePhaseFailed, err.Error(), nil)
	}
}

// finish writes a terminal phase; a completed restore also gets its final progress.
func (r *Reconciler) finish(ctx context.Context, pvr *velerov1.PodVolumeRestore, phase velerov1.PodVolumePhase, msg string, st *uploader.RestoreStats) error {
	var extra *operation.Status
	if st != nil {
		extra = &operation.Status{Progress: &shared.DataMoveOperationProgress{TotalBytes: st.Bytes, BytesDone: st.Bytes, TotalFiles: st.Files, FilesDone: st.Files,
			Stage: shared.ProgressStageDone}}
	}
	return r.reporter().Finish(ctx, pvr, phase, msg, extra, pvr.Status.StartTimestamp)
}

func (r *Reconciler) reporter() operation.Reporter {
	return operation.Reporter{Client: r.Client, Recorder: r.Recorder, Kind: metrics.KindRestore, Now: r.Clock.Now}
}

func setting(pvr *velerov1.PodVolumeRestore, key string) string {
	if s := pvr.Spec.UploaderSettings; s != nil {
		return (*s)[key]
	}
	return ""
}

func (r *Reconciler) parallel(pvr *velerov1.PodVolumeRestore) int {
	if n, err := strconv.Atoi(setting(pvr, "ParallelFilesDownload")); err == nil && n > 0 {
		return n
	}
	return 0 // the uploader's default for restores
}
