package nodeagent

import (
	"context"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/fields"
	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
)

// nodeField is the field a PodVolumeBackup names its node by. Ferry's CRD declares it a
// selectable field; Velero's CRDs declare no selectable fields, and the API server refuses a
// field selector on it ("field label not supported").
const nodeField = "spec.node"

// NodeFieldSelectable reports whether the API server filters PodVolumeBackups by spec.node: it
// lists at most one with that field selector. When it does not (Velero's CRD, or the list failed
// for another reason), reason says why, and the agent watches every PodVolumeBackup of its
// namespace and leaves other nodes' alone in the client. A refused selector must never reach the
// cache: its informer would retry it forever, never sync, and stop the whole agent.
func NodeFieldSelectable(ctx context.Context, c client.Reader, namespace, node string) (ok bool, reason error) {
	err := c.List(ctx, &velerov1.PodVolumeBackupList{}, client.InNamespace(namespace), client.Limit(1),
		client.MatchingFieldsSelector{Selector: fields.OneTermEqualSelector(nodeField, node)})
	switch {
	case err == nil:
		return true, nil
	case apierrors.IsBadRequest(err) && strings.Contains(err.Error(), "field label not supported"):
		return false, fmt.Errorf("the PodVolumeBackup CRD has no selectable field %s (Velero's CRD): %w", nodeField, err)
	default:
		return false, fmt.Errorf("list PodVolumeBackups by %s: %w", nodeField, err)
	}
}
