package datamovement

import (
	"strconv"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferry-backup/ferry/api/shared"
	velerov1 "github.com/ferry-backup/ferry/api/v1"
	velerov2alpha1 "github.com/ferry-backup/ferry/api/v2alpha1"
	"github.com/ferry-backup/ferry/internal/exposer"
	"github.com/ferry-backup/ferry/internal/operation"
)

// view is what the shared lifecycle reads of a DataUpload or a DataDownload.
type view struct {
	obj       client.Object
	upload    bool
	dataMover string
	phase     velerov2alpha1.DataMovePhase
	cancel    bool
	// specNode pins the operation to one node's agent (Ferry's field; empty: any).
	specNode   string
	acceptedBy string
	// node is where the mover pod runs, once Prepared.
	node     string
	accepted *metav1.Time
	started  *metav1.Time
	timeout  time.Duration
	// invalid is what makes the spec unusable: an operationTimeout that is not a duration.
	invalid  error
	progress shared.DataMoveOperationProgress
	message  string
	// source is an upload's snapshot; target a download's claim.
	source *exposer.Snapshot
	target exposer.Target
}

func viewOf(obj client.Object) view {
	switch o := obj.(type) {
	case *velerov2alpha1.DataUpload:
		v := view{obj: o, upload: true, dataMover: o.Spec.DataMover, phase: o.Status.Phase, cancel: o.Spec.Cancel,
			specNode: o.Spec.Node, acceptedBy: o.Status.AcceptedByNode, node: o.Status.Node, accepted: o.Status.AcceptedTimestamp,
			started: o.Status.StartTimestamp, timeout: operation.Timeout(&o.Spec.OperationTimeout), progress: o.Status.Progress,
			message: o.Status.Message, invalid: operation.TimeoutErr(&o.Spec.OperationTimeout)}
		if s := o.Spec.CSISnapshot; s != nil {
			v.source = &exposer.Snapshot{Namespace: o.Spec.SourceNamespace, Name: s.VolumeSnapshot, StorageClass: s.StorageClass}
		}
		return v
	case *velerov2alpha1.DataDownload:
		return view{obj: o, dataMover: o.Spec.DataMover, phase: o.Status.Phase, cancel: o.Spec.Cancel,
			specNode: o.Spec.Node, acceptedBy: o.Status.AcceptedByNode, node: o.Status.Node, accepted: o.Status.AcceptedTimestamp,
			started: o.Status.StartTimestamp, timeout: operation.Timeout(&o.Spec.OperationTimeout), progress: o.Status.Progress,
			message: o.Status.Message, invalid: operation.TimeoutErr(&o.Spec.OperationTimeout),
			target: exposer.Target{Namespace: o.Spec.TargetVolume.Namespace, Name: o.Spec.TargetVolume.PVC, Size: o.Spec.SnapshotSize}}
	}
	panic("datamovement: not a DataUpload or DataDownload")
}

// owner is the node whose agent answers for the operation: where its mover runs, once it runs,
// before that the one that accepted it.
func (v view) owner() string {
	if v.node != "" {
		return v.node
	}
	return v.acceptedBy
}

func (v view) op() exposer.Operation { return exposer.Operation{Owner: v.obj, Upload: v.upload} }

// status is a partial status written as a merge patch: empty fields are left as they are.
type status struct {
	Phase               velerov2alpha1.DataMovePhase      `json:"phase,omitempty"`
	Message             *string                           `json:"message,omitempty"`
	Node                string                            `json:"node,omitempty"`
	SnapshotID          string                            `json:"snapshotID,omitempty"`
	StartTimestamp      *metav1.Time                      `json:"startTimestamp,omitempty"`
	CompletionTimestamp *metav1.Time                      `json:"completionTimestamp,omitempty"`
	Progress            *shared.DataMoveOperationProgress `json:"progress,omitempty"`
	IncrementalBytes    int64                             `json:"incrementalBytes,omitempty"`
	Conditions          []metav1.Condition                `json:"conditions,omitempty"`
}

func ptr[T any](v T) *T { return &v }

// parallel is the mover's workers: dataMoverConfig parallelFilesUpload (a DataUpload) or
// parallelFilesDownload, else the node-agent ConfigMap's value for uploads.
func parallel(obj client.Object, configured int) int {
	switch o := obj.(type) {
	case *velerov2alpha1.DataUpload:
		if n, err := strconv.Atoi(o.Spec.DataMoverConfig["parallelFilesUpload"]); err == nil && n > 0 {
			return n
		}
		return configured
	case *velerov2alpha1.DataDownload:
		if n, err := strconv.Atoi(o.Spec.DataMoverConfig["parallelFilesDownload"]); err == nil && n > 0 {
			return n
		}
	}
	return 0
}

// condition for a Completed upload whose snapshot lacks entries, as on PodVolumeBackups.
func notBackedUp(res exposer.Result, now time.Time) []metav1.Condition {
	if res.NotBackedUp == 0 {
		return nil
	}
	return []metav1.Condition{{Type: velerov1.ConditionEntriesNotBackedUp, Status: metav1.ConditionTrue,
		Reason: "UnreadableOrSpecialEntries", LastTransitionTime: metav1.NewTime(now.Truncate(time.Second)),
		Message: "entries not backed up: " + operation.JoinFirst(res.NotBackedUpMessages, 5)}}
}
