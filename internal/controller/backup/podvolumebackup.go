package backup

import (
	"context"
	"fmt"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/ferry-backup/ferry/api/shared"
	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/operation"
)

// RepositoryName is the name of the BackupRepository of a location (one repository per location).
func RepositoryName(bsl string) string { return bsl + "-kopia" }

// ensureRepository gets or creates the location's BackupRepository and returns it; it is ready
// for the backup when its phase is Ready. Creating it twice is harmless: the name is fixed.
func (r *Reconciler) ensureRepository(ctx context.Context, b *velerov1.Backup, bsl *velerov1.BackupStorageLocation) (*velerov1.BackupRepository, error) {
	br := &velerov1.BackupRepository{}
	err := r.Client.Get(ctx, client.ObjectKey{Namespace: b.Namespace, Name: RepositoryName(bsl.Name)}, br)
	if apierrors.IsNotFound(err) {
		br = &velerov1.BackupRepository{
			ObjectMeta: metav1.ObjectMeta{Namespace: b.Namespace, Name: RepositoryName(bsl.Name),
				Labels: map[string]string{velerov1.LabelStorageLocation: bsl.Name, "velero.io/repository-type": velerov1.RepositoryTypeKopia}},
			Spec: velerov1.BackupRepositorySpec{BackupStorageLocation: bsl.Name, RepositoryType: velerov1.RepositoryTypeKopia,
				MaintenanceFrequency: shared.Duration{Duration: time.Hour}},
		}
		err = r.Client.Create(ctx, br)
		if apierrors.IsAlreadyExists(err) {
			return br, nil // made meanwhile; its phase is read at the next look
		}
	}
	return br, err
}

// waitForRepository says how long to wait for a repository that is not Ready, or fails the
// backup once it waited RepositoryWaitLimit: never a silent wait without end.
func (r *Reconciler) waitForRepository(ctx context.Context, b *velerov1.Backup, br *velerov1.BackupRepository) (ctrl.Result, error) {
	waited := r.Clock.Since(b.CreationTimestamp.Time)
	state := string(br.Status.Phase)
	if state == "" {
		state = "not ready yet"
	}
	if br.Status.Message != "" {
		state += ": " + br.Status.Message
	}
	if waited >= RepositoryWaitLimit {
		return ctrl.Result{}, r.fail(ctx, b, fmt.Sprintf("BackupRepository %s is %s (waited %s)", br.Name, state, RepositoryWaitLimit))
	}
	if br.Status.Phase == velerov1.BackupRepositoryPhaseNotReady {
		r.Recorder.Eventf(b, corev1.EventTypeWarning, "WaitingForRepository", "BackupRepository %s is %s; the backup fails if it is not Ready within %s",
			br.Name, state, RepositoryWaitLimit)
	}
	// Soon at first (a new repository is usually ready within a second), then less often.
	return ctrl.Result{RequeueAfter: min(max(waited/4, 500*time.Millisecond), 15*time.Second)}, nil
}

// createPodVolumeBackup asks the node-agent of the pod's node to back up one volume.
func (r *Reconciler) createPodVolumeBackup(ctx context.Context, b *velerov1.Backup, bsl string, v volume) error {
	timeout := b.Spec.ItemOperationTimeout.Duration
	if timeout <= 0 {
		timeout = DefaultVolumeTimeout
	}
	tags := map[string]string{"backup": b.Name, "backup-uid": string(b.UID), "ns": v.Pod.Namespace,
		"pod": v.Pod.Name, "pod-uid": string(v.Pod.UID), "volume": v.Volume}
	if v.Claim != "" {
		tags["pvc"] = v.Claim
	}
	pvb := &velerov1.PodVolumeBackup{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: b.Namespace, Name: operation.ShortName(b.Name, v.Pod.Namespace, v.Pod.Name, v.Volume),
			Labels: map[string]string{velerov1.LabelBackupName: b.Name, velerov1.LabelBackupUID: string(b.UID)},
		},
		Spec: velerov1.PodVolumeBackupSpec{
			Node:                  v.Pod.Spec.NodeName,
			Pod:                   corev1.ObjectReference{Kind: "Pod", Namespace: v.Pod.Namespace, Name: v.Pod.Name, UID: v.Pod.UID},
			Volume:                v.Volume,
			BackupStorageLocation: bsl,
			UploaderType:          velerov1.UploaderTypeKopia,
			Tags:                  tags,
			OperationTimeout:      &shared.Duration{Duration: timeout},
		},
	}
	if c := b.Spec.UploaderConfig; c != nil && c.ParallelFilesUpload > 0 {
		pvb.Spec.UploaderSettings = &map[string]string{"ParallelFilesUpload": strconv.Itoa(c.ParallelFilesUpload)}
	}
	if err := controllerutil.SetControllerReference(b, pvb, r.Client.Scheme()); err != nil {
		return err
	}
	if err := r.Client.Create(ctx, pvb); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return nil
}
