package operation

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferry-backup/ferry/api/shared"
	velerov1 "github.com/ferry-backup/ferry/api/v1"
)

// PatchStatus merges fields into the object's status through the status subresource. Only the
// named fields change, so concurrent writers of other fields (progress and phase) do not
// overwrite each other. CRDs installed by Velero have no status subresource; there the status is
// patched through the object itself. A process that may patch only the status (the node-agent
// as `ferry install` sets it up) gets the NotFound of a deleted object, not the Forbidden of that
// second try.
//
// fields is a typed partial status (Status, or a kind's own) whose empty fields are omitted, or
// a map of field names to values.
func PatchStatus(ctx context.Context, c client.Client, obj client.Object, fields any) error {
	return patchStatus(ctx, c, obj, map[string]any{"status": fields})
}

// PatchStatusIfUnchanged is PatchStatus applied only if the object's resourceVersion is still
// the one read: otherwise the API server answers Conflict.
func PatchStatusIfUnchanged(ctx context.Context, c client.Client, obj client.Object, fields any) error {
	return patchStatus(ctx, c, obj, map[string]any{"status": fields, "metadata": map[string]any{"resourceVersion": obj.GetResourceVersion()}})
}

// Under Velero's own CRDs the status is written through the object: `ferry install
// --in-place-of-velero` grants the node-agent these rules (config/rbac/velero-crds) besides its own.
// +kubebuilder:rbac:groups=velero.io,namespace=velero,resources=podvolumebackups;podvolumerestores;datauploads;datadownloads,verbs=patch

func patchStatus(ctx context.Context, c client.Client, obj client.Object, body map[string]any) error {
	data, err := json.Marshal(body)
	if err != nil {
		return err
	}
	patch := client.RawPatch(types.MergePatchType, data)
	err = c.Status().Patch(ctx, obj, patch)
	if apierrors.IsNotFound(err) {
		// No status subresource, or the object is gone (NotFound again).
		if perr := c.Patch(ctx, obj, patch); !apierrors.IsForbidden(perr) {
			err = perr
		}
	}
	if err != nil {
		return fmt.Errorf("update status of %s: %w", client.ObjectKeyFromObject(obj), err)
	}
	return nil
}

// Status is a partial status of a PodVolumeBackup or PodVolumeRestore, written as a merge patch:
// fields left empty are left as they are.
type Status struct {
	Phase velerov1.PodVolumePhase `json:"phase,omitempty"`
	// Message is written when set, also when set to "" (which clears it).
	Message             *string                           `json:"message,omitempty"`
	Path                string                            `json:"path,omitempty"`
	Node                string                            `json:"node,omitempty"`
	SnapshotID          string                            `json:"snapshotID,omitempty"`
	AcceptedTimestamp   *metav1.Time                      `json:"acceptedTimestamp,omitempty"`
	StartTimestamp      *metav1.Time                      `json:"startTimestamp,omitempty"`
	CompletionTimestamp *metav1.Time                      `json:"completionTimestamp,omitempty"`
	Progress            *shared.DataMoveOperationProgress `json:"progress,omitempty"`
	IncrementalBytes    *int64                            `json:"incrementalBytes,omitempty"`
	Conditions          []metav1.Condition                `json:"conditions,omitempty"`
	Attempts            *int32                            `json:"attempts,omitempty"`
}

// Ptr returns a pointer to v, for Status' optional fields.
func Ptr[T any](v T) *T { return &v }

// Tally counts pod volume operations by outcome and reports whether all have ended.
func Tally(phases []velerov1.PodVolumePhase) (counts velerov1.VolumeOperationCounts, done bool) {
	counts.Total = len(phases)
	done = true
	for _, p := range phases {
		switch p {
		case velerov1.PodVolumePhaseCompleted:
			counts.Completed++
		case velerov1.PodVolumePhaseFailed, velerov1.PodVolumePhaseCanceled:
			counts.Failed++
		default:
			done = false
		}
	}
	return counts, done
}

// ShortName returns prefix-<hash of parts>, a valid object name of at most 63 characters that is
// the same for the same inputs (so creating it twice is harmless).
func ShortName(prefix string, parts ...string) string {
	sum := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	suffix := hex.EncodeToString(sum[:5])
	if len(prefix) > 52 {
		prefix = prefix[:52]
	}
	return strings.TrimRight(prefix, "-.") + "-" + suffix
}

// JoinFirst joins the first n items with "; " and says how many more there are.
func JoinFirst(items []string, n int) string {
	s := strings.Join(items[:min(len(items), n)], "; ")
	if len(items) > n {
		s += fmt.Sprintf("; and %d more", len(items)-n)
	}
	return s
}

// UpdateStatus writes the object's status only if the object is unchanged since it was read (its
// resourceVersion): of two processes updating from the same version, exactly one succeeds and the
// other gets a Conflict. Under CRDs without the status subresource it updates the object itself.
func UpdateStatus(ctx context.Context, c client.Client, obj client.Object) error {
	err := c.Status().Update(ctx, obj)
	if apierrors.IsNotFound(err) {
		if uerr := c.Update(ctx, obj); !apierrors.IsForbidden(uerr) {
			err = uerr
		}
	}
	if err != nil {
		return fmt.Errorf("update status of %s: %w", client.ObjectKeyFromObject(obj), err)
	}
	return nil
}
