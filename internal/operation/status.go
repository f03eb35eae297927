package operation

import (
	"context"
	"encoding/json"
	"fmt"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// PatchStatus merges fields into the object's status through the status subresource. Only the
// named fields change, so concurrent writers of other fields (progress and phase) do not
// overwrite each other.
func PatchStatus(ctx context.Context, c client.Client, obj client.Object, fields map[string]any) error {
	data, err := json.Marshal(map[string]any{"status": fields})
	if err != nil {
		return err
	}
	if err := c.Status().Patch(ctx, obj, client.RawPatch(types.MergePatchType, data)); err != nil {
		return fmt.Errorf("update status of %s: %w", client.ObjectKeyFromObject(obj), err)
	}
	return nil
}
