package restore

import (
	"context"
	"fmt"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	velerov2alpha1 "github.com/ferry-backup/ferry/api/v2alpha1"
	"github.com/ferry-backup/ferry/internal/backuprecord"
	"github.com/ferry-backup/ferry/internal/onchange"
	"github.com/ferry-backup/ferry/internal/operation"
)

// targetPod finds where a backed-up volume goes: in the mapped namespace, the running pod that
// mounts the same claim, or for other volumes the pod of the same name with that volume.
func (r *Reconciler) targetPod(ctx context.Context, rs *velerov1.Restore, v backuprecord.Volume) (*corev1.Pod, string, error) {
	ns := targetNamespace(rs, v.Namespace)
	what := describe(v)
	if v.Claim != "" {
		pods := &corev1.PodList{}
		if err := r.Cluster.List(ctx, pods, client.InNamespace(ns)); err != nil {
			return nil, "", err
		}
		for i := range pods.Items {
			p := &pods.Items[i]
			for _, vol := range p.Spec.Volumes {
				if vol.PersistentVolumeClaim != nil && vol.PersistentVolumeClaim.ClaimName == v.Claim && usable(p) {
					return p, vol.Name, nil
				}
			}
		}
		return nil, "", fmt.Errorf("%s: claim %s exists in %s but no scheduled pod mounts it "+
			"(an existing claim is restored only through a pod that mounts it; delete the claim to have the restore re-create and fill it)",
			what, v.Claim, ns)
	}
	p := &corev1.Pod{}
	if err := r.Cluster.Get(ctx, client.ObjectKey{Namespace: ns, Name: v.Pod}, p); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, "", fmt.Errorf("%s: no pod %s/%s", what, ns, v.Pod)
		}
		return nil, "", err
	}
	for _, vol := range p.Spec.Volumes {
		if vol.Name == v.Volume && usable(p) {
			return p, vol.Name, nil
		}
	}
	return nil, "", fmt.Errorf("%s: pod %s/%s has no volume %s or is not scheduled", what, ns, v.Pod, v.Volume)
}

// usable: the pod is on a node and not going away (it need not run yet: a restore may happen
// while an init container waits for it).
func usable(p *corev1.Pod) bool {
	return p.Spec.NodeName != "" && p.DeletionTimestamp == nil &&
		p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed
}

func (r *Reconciler) createPodVolumeRestore(ctx context.Context, rs *velerov1.Restore, rec backuprecord.Record, v backuprecord.Volume, pod *corev1.Pod, volume string) error {
	pvr := &velerov1.PodVolumeRestore{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: rs.Namespace, Name: operation.ShortName(rs.Name, pod.Namespace, pod.Name, volume),
			Labels: map[string]string{velerov1.LabelRestoreName: rs.Name, velerov1.LabelBackupName: rec.Name},
		},
		Spec: velerov1.PodVolumeRestoreSpec{
			Pod:                   corev1.ObjectReference{Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID},
			Volume:                volume,
			Node:                  pod.Spec.NodeName,
			BackupStorageLocation: rec.StorageLocation,
			SnapshotID:            v.SnapshotID,
			SourceNamespace:       v.Namespace,
			UploaderType:          rs.Spec.UploaderType,
		},
	}
	if c := rs.Spec.UploaderConfig; c != nil {
		settings := map[string]string{}
		if c.WriteSparseFiles != nil {
			settings["WriteSparseFiles"] = strconv.FormatBool(*c.WriteSparseFiles)
		}
		if c.ParallelFilesDownload > 0 {
			settings["ParallelFilesDownload"] = strconv.Itoa(c.ParallelFilesDownload)
		}
		pvr.Spec.UploaderSettings = &settings
	}
	if err := controllerutil.SetControllerReference(rs, pvr, r.Client.Scheme()); err != nil {
		return err
	}
	if err := r.Client.Create(ctx, pvr); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return nil
}

// progress sums up the PodVolumeRestores and DataDownloads and ends the restore once all have
// ended.
func (r *Reconciler) progress(ctx context.Context, rs *velerov1.Restore) error {
	pvrs := &velerov1.PodVolumeRestoreList{}
	if err := r.Client.List(ctx, pvrs, client.InNamespace(rs.Namespace), client.MatchingLabels{velerov1.LabelRestoreName: rs.Name}); err != nil {
		return err
	}
	dds, err := r.dataDownloads(ctx, rs)
	if err != nil {
		return err
	}
	phases := make([]velerov1.PodVolumePhase, len(pvrs.Items))
	var failures []string
	for i, p := range pvrs.Items {
		phases[i] = p.Status.Phase
		if p.Status.Phase == velerov1.PodVolumePhaseFailed || p.Status.Phase == velerov1.PodVolumePhaseCanceled {
			failures = append(failures, fmt.Sprintf("%s/%s volume %s: %s", p.Spec.Pod.Namespace, p.Spec.Pod.Name, p.Spec.Volume, p.Status.Message))
		}
	}
	counts, done := operation.Tally(phases)
	// DataDownloads count like PodVolumeRestores: their phases have the same values.
	phases = make([]velerov1.PodVolumePhase, len(dds))
	for i, d := range dds {
		phases[i] = velerov1.PodVolumePhase(d.Status.Phase)
		if d.Status.Phase == velerov2alpha1.DataMovePhaseFailed || d.Status.Phase == velerov2alpha1.DataMovePhaseCanceled {
			failures = append(failures, fmt.Sprintf("claim %s/%s (DataDownload %s): %s %s",
				d.Spec.TargetVolume.Namespace, d.Spec.TargetVolume.PVC, d.Name, d.Status.Phase, d.Status.Message))
		}
	}
	moves, movesDone := operation.Tally(phases)
	if prev := rs.Status.PodVolumeRestores; prev != nil {
		counts.Skipped = prev.Skipped
		done = done && prev.Total <= counts.Total
	}
	if prev := rs.Status.DataDownloads; prev != nil {
		movesDone = movesDone && prev.Total <= moves.Total
	}
	if !done || !movesDone {
		fields := progressFields(counts, moves)
		if same, err := onchange.StatusHolds(rs, fields); same || err != nil {
			return err
		}
		return operation.PatchStatus(ctx, r.Client, rs, fields)
	}
	all := velerov1.VolumeOperationCounts{Total: counts.Total + moves.Total, Completed: counts.Completed + moves.Completed,
		Failed: counts.Failed + moves.Failed, Skipped: counts.Skipped}
	phase, eventType := velerov1.RestorePhaseCompleted, corev1.EventTypeNormal
	switch {
	case all.Completed == 0:
		phase, eventType = velerov1.RestorePhaseFailed, corev1.EventTypeWarning
	case all.Failed > 0 || all.Skipped > 0:
		phase, eventType = velerov1.RestorePhasePartiallyFailed, corev1.EventTypeWarning
	}
	for _, c := range rs.Status.Conditions {
		if c.Type == "VolumesSkipped" && c.Status == metav1.ConditionTrue {
			failures = append(failures, "skipped: "+c.Message)
		}
	}
	r.Recorder.Eventf(rs, eventType, string(phase), "%d of %d volumes restored, %d failed, %d skipped",
		all.Completed, all.Total+all.Skipped, all.Failed, all.Skipped)
	log.FromContext(ctx).Info("restore ended", "restore", rs.Name, "phase", phase, "restored", all.Completed,
		"failed", all.Failed, "skipped", all.Skipped, "dataDownloads", moves.Total)
	fields := progressFields(counts, moves)
	for k, v := range map[string]any{"phase": phase, "errors": all.Failed,
		"failureReason": operation.JoinFirst(failures, 5), "completionTimestamp": r.now()} {
		fields[k] = v
	}
	return operation.PatchStatus(ctx, r.Client, rs, fields)
}

// progressFields are the status counts of both paths: podVolumeRestores and dataDownloads,
// Velero's restoreItemOperations (its DataDownloads are item operations) and progress over all
// volumes.
func progressFields(counts, moves velerov1.VolumeOperationCounts) map[string]any {
	fields := map[string]any{"podVolumeRestores": counts,
		"progress": velerov1.RestoreProgress{TotalItems: counts.Total + moves.Total, ItemsRestored: counts.Completed + moves.Completed}}
	if moves.Total > 0 {
		fields["dataDownloads"] = moves
		fields["restoreItemOperationsAttempted"] = moves.Total
		fields["restoreItemOperationsCompleted"] = moves.Completed
		fields["restoreItemOperationsFailed"] = moves.Failed
	}
	return fields
}
