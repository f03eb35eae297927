package deletebackuprequest

import (
	"context"
	"fmt"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	velerov2alpha1 "github.com/ferry-backup/ferry/api/v2alpha1"
	"github.com/ferry-backup/ferry/internal/operation"
)

// dataUploads lists the backup's DataUploads (not those of an older backup of the same name).
func (r *Reconciler) dataUploads(ctx context.Context, b *velerov1.Backup) ([]velerov2alpha1.DataUpload, error) {
	list := &velerov2alpha1.DataUploadList{}
	if err := r.Client.List(ctx, list, client.InNamespace(b.Namespace), client.MatchingLabels{velerov1.LabelBackupName: b.Name}); err != nil {
		return nil, err
	}
	return slices.DeleteFunc(list.Items, func(d velerov2alpha1.DataUpload) bool {
		uid, ok := d.Labels[velerov1.LabelBackupUID]
		return ok && uid != string(b.UID)
	}), nil
}

// stopDataUploads asks every running DataUpload of the backup to cancel (spec.cancel), and ends
// those no node-agent accepted within AcceptGrace; it returns those that still run. The
// node-agent that runs one ends it Canceled and cleans up its snapshot objects.
func (r *Reconciler) stopDataUploads(ctx context.Context, dbr *velerov1.DeleteBackupRequest, dus []velerov2alpha1.DataUpload) ([]string, error) {
	var running []string
	for i := range dus {
		d := &dus[i]
		if d.Status.Phase.Terminal() {
			continue
		}
		if !d.Spec.Cancel {
			patch := client.MergeFrom(d.DeepCopy())
			d.Spec.Cancel = true
			if err := r.Client.Patch(ctx, d, patch); client.IgnoreNotFound(err) != nil {
				return nil, fmt.Errorf("cancel DataUpload %s: %w", d.Name, err)
			}
		}
		unaccepted := d.Status.Phase == "" || d.Status.Phase == velerov2alpha1.DataMovePhaseNew
		if unaccepted && r.Clock.Since(dbr.CreationTimestamp.Time) >= AcceptGrace {
			err := operation.PatchStatus(ctx, r.Client, d, map[string]any{"phase": velerov2alpha1.DataMovePhaseCanceled,
				"message":             fmt.Sprintf("canceled by DeleteBackupRequest %s; no node-agent accepted it within %s", dbr.Name, AcceptGrace),
				"completionTimestamp": metav1.NewTime(r.Clock.Now().Truncate(time.Second))})
			if client.IgnoreNotFound(err) != nil {
				return nil, err
			}
			continue
		}
		running = append(running, fmt.Sprintf("DataUpload %s of claim %s/%s (%s on node %s)",
			d.Name, d.Spec.SourceNamespace, d.Spec.SourcePVC, d.Status.Phase, d.Status.Node))
	}
	return running, nil
}
