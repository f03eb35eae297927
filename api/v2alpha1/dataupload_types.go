package v2alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferry-backup/ferry/api/shared"
)

// SnapshotType is the kind of snapshot a DataUpload moves.
// +kubebuilder:validation:Enum=CSI
type SnapshotType string

// SnapshotTypeCSI is a CSI VolumeSnapshot.
const SnapshotTypeCSI SnapshotType = "CSI"

// DataUploadSpec asks a data mover to copy the data of a CSI snapshot of a PVC into the
// repository of a storage location.
// +kubebuilder:validation:XValidation:rule="self.snapshotType != 'CSI' || (has(self.csiSnapshot) && has(self.csiSnapshot.volumeSnapshot) && size(self.csiSnapshot.volumeSnapshot) > 0)",message="csiSnapshot.volumeSnapshot is required when snapshotType is CSI"
type DataUploadSpec struct {
	// SnapshotType is the kind of snapshot to move; CSI is the only one.
	SnapshotType SnapshotType `json:"snapshotType"`

	// CSISnapshot names the VolumeSnapshot to move (when snapshotType is CSI).
	// +optional
	// +nullable
	CSISnapshot *CSISnapshotSpec `json:"csiSnapshot"`

	// SourcePVC is the PVC the snapshot was taken of.
	// +kubebuilder:validation:MinLength=1
	SourcePVC string `json:"sourcePVC"`

	// DataMover is the mover that handles this upload: "ferry", or "" / "velero" for Velero's.
	// +optional
	DataMover string `json:"datamover,omitempty"`

	// BackupStorageLocation is the location whose repository receives the data.
	// +kubebuilder:validation:MinLength=1
	BackupStorageLocation string `json:"backupStorageLocation"`

	// SourceNamespace is the namespace of the source PVC and its snapshot.
	// +kubebuilder:validation:MinLength=1
	SourceNamespace string `json:"sourceNamespace"`

	// DataMoverConfig holds mover-specific settings.
	// +optional
	// +nullable
	DataMoverConfig map[string]string `json:"dataMoverConfig,omitempty"`

	// Cancel asks the mover to stop; the upload then ends Canceled.
	// +optional
	Cancel bool `json:"cancel,omitempty"`

	// OperationTimeout bounds how long preparing and moving may take before the upload fails.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$`
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('876000h')",message="must be a duration of at most 876000h (100 years)"
	OperationTimeout shared.Duration `json:"operationTimeout"`

	// Node pins the upload to one node's agent (Ferry, from the seed; when empty any node-agent
	// may accept it, as in Velero).
	// +optional
	Node string `json:"node,omitempty"`
}

// CSISnapshotSpec names a CSI VolumeSnapshot and how it was made.
type CSISnapshotSpec struct {
	// VolumeSnapshot is the name of the VolumeSnapshot in the source namespace.
	VolumeSnapshot string `json:"volumeSnapshot"`

	// StorageClass is the storage class of the source PVC.
	StorageClass string `json:"storageClass"`

	// SnapshotClass is the VolumeSnapshotClass the snapshot was made with.
	// +optional
	SnapshotClass string `json:"snapshotClass"`

	// Driver is the CSI driver of the VolumeSnapshotContent.
	// +optional
	Driver string `json:"driver,omitempty"`
}

// DataUploadStatus is the state and outcome of a DataUpload.
type DataUploadStatus struct {
	// Phase is where the upload stands.
	// +optional
	Phase DataMovePhase `json:"phase,omitempty"`

	// Path is the directory of the snapshot volume that was read.
	// +optional
	Path string `json:"path,omitempty"`

	// SnapshotID is the repository snapshot written on success; DataDownloads restore it.
	// +optional
	SnapshotID string `json:"snapshotID,omitempty"`

	// DataMoverResult holds mover-specific results.
	// +optional
	// +nullable
	DataMoverResult *map[string]string `json:"dataMoverResult,omitempty"`

	// Message explains a failure or cancellation.
	// +optional
	Message string `json:"message,omitempty"`

	// StartTimestamp is when the upload started.
	// +optional
	// +nullable
	StartTimestamp *metav1.Time `json:"startTimestamp,omitempty"`

	// CompletionTimestamp is when the upload ended, whatever its outcome.
	// +optional
	// +nullable
	CompletionTimestamp *metav1.Time `json:"completionTimestamp,omitempty"`

	// Progress is the live progress (Velero reads totalBytes and bytesDone).
	// +optional
	Progress shared.DataMoveOperationProgress `json:"progress,omitempty"`

	// IncrementalBytes is the number of bytes that were new or changed since the last backup
	// (Velero's field; the same figure as progress.incrementalBytes), written on completion.
	// +optional
	IncrementalBytes int64 `json:"incrementalBytes,omitempty"`

	// Node is the node that moves the data.
	// +optional
	Node string `json:"node,omitempty"`

	// NodeOS is the operating system of that node.
	// +optional
	NodeOS NodeOS `json:"nodeOS,omitempty"`

	// AcceptedByNode is the node whose agent accepted and prepared the upload.
	// +optional
	AcceptedByNode string `json:"acceptedByNode,omitempty"`

	// AcceptedTimestamp is when the upload was accepted.
	// +optional
	// +nullable
	AcceptedTimestamp *metav1.Time `json:"acceptedTimestamp,omitempty"`

	// Conditions are Ferry's detailed observations.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// DataUpload moves the data of one CSI volume snapshot into a repository.
//
// +kubebuilder:object:root=true
// +kubebuilder:storageversion
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=du
// +kubebuilder:printcolumn:name="Status",type="string",JSONPath=".status.phase"
// +kubebuilder:printcolumn:name="Started",type="date",JSONPath=".status.startTimestamp"
// +kubebuilder:printcolumn:name="Bytes Done",type="integer",format="int64",JSONPath=".status.progress.bytesDone"
// +kubebuilder:printcolumn:name="Total Bytes",type="integer",format="int64",JSONPath=".status.progress.totalBytes"
// +kubebuilder:printcolumn:name="Storage Location",type="string",JSONPath=".spec.backupStorageLocation"
// +kubebuilder:printcolumn:name="Node",type="string",JSONPath=".status.node"
// +kubebuilder:printcolumn:name="Age",type="date",JSONPath=".metadata.creationTimestamp"
type DataUpload struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// +optional
	Spec DataUploadSpec `json:"spec,omitempty"`
	// +optional
	Status DataUploadStatus `json:"status,omitempty"`
}

// DataUploadList is a list of DataUploads.
//
// +kubebuilder:object:root=true
type DataUploadList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []DataUpload `json:"items"`
}
