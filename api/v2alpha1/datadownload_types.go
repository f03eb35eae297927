package v2alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferry-backup/ferry/api/shared"
)

// DataDownloadSpec asks a data mover to write a repository snapshot into a new volume that then
// becomes the target PVC's volume.
type DataDownloadSpec struct {
	// TargetVolume is the PVC (and PV) that receives the data.
	TargetVolume TargetVolumeSpec `json:"targetVolume"`

	// BackupStorageLocation is the location whose repository holds the snapshot.
	// +kubebuilder:validation:MinLength=1
	BackupStorageLocation string `json:"backupStorageLocation"`

	// DataMover is the mover that handles this download: "ferry", or "" / "velero" for Velero's.
	// +optional
	DataMover string `json:"datamover,omitempty"`

	// SnapshotID is the repository snapshot to restore (a DataUpload's status.snapshotID).
	// +kubebuilder:validation:MinLength=1
	SnapshotID string `json:"snapshotID"`

	// SourceNamespace is the namespace the volume was backed up from.
	SourceNamespace string `json:"sourceNamespace"`

	// DataMoverConfig holds mover-specific settings.
	// +optional
	DataMoverConfig map[string]string `json:"dataMoverConfig,omitempty"`

	// Cancel asks the mover to stop; the download then ends Canceled.
	// +optional
	Cancel bool `json:"cancel,omitempty"`

	// OperationTimeout bounds how long preparing and moving may take before the download fails.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$`
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('876000h')",message="must be a duration of at most 876000h (100 years)"
	OperationTimeout shared.Duration `json:"operationTimeout"`

	// NodeOS is the operating system of the node that should move the data.
	// +optional
	NodeOS NodeOS `json:"nodeOS,omitempty"`

	// SnapshotSize is the logical size of the snapshot, in bytes.
	// +optional
	SnapshotSize int64 `json:"snapshotSize,omitempty"`

	// Node pins the download to one node's agent (Ferry; when empty any node-agent may accept it).
	// +optional
	Node string `json:"node,omitempty"`
}

// TargetVolumeSpec names the volume a DataDownload writes.
type TargetVolumeSpec struct {
	// PVC is the target PVC.
	// +kubebuilder:validation:MinLength=1
	PVC string `json:"pvc"`

	// PV is the target PV, when already known.
	PV string `json:"pv"`

	// Namespace is the namespace of the target PVC.
	// +kubebuilder:validation:MinLength=1
	Namespace string `json:"namespace"`
}

// DataDownloadStatus is the state and outcome of a DataDownload.
type DataDownloadStatus struct {
	// Phase is where the download stands.
	// +optional
	Phase DataMovePhase `json:"phase,omitempty"`

	// Message explains a failure or cancellation.
	// +optional
	Message string `json:"message,omitempty"`

	// StartTimestamp is when the download started.
	// +optional
	// +nullable
	StartTimestamp *metav1.Time `json:"startTimestamp,omitempty"`

	// CompletionTimestamp is when the download ended, whatever its outcome.
	// +optional
	// +nullable
	CompletionTimestamp *metav1.Time `json:"completionTimestamp,omitempty"`

	// Progress is the live progress.
	// +optional
	Progress shared.DataMoveOperationProgress `json:"progress,omitempty"`

	// Node is the node that moves the data.
	// +optional
	Node string `json:"node,omitempty"`

	// AcceptedByNode is the node whose agent accepted and prepared the download.
	// +optional
	AcceptedByNode string `json:"acceptedByNode,omitempty"`

	// AcceptedTimestamp is when the download was accepted.
	// +optional
	// +nullable
	AcceptedTimestamp *metav1.Time `json:"acceptedTimestamp,omitempty"`

	// Conditions are Ferry's detailed observations.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// DataDownload moves one repository snapshot into a new volume for a PVC.
//
// +kubebuilder:object:root=true
// +kubebuilder:storageversion
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=dd
// +kubebuilder:printcolumn:name="Status",type="string",JSONPath=".status.phase"
// +kubebuilder:printcolumn:name="Started",type="date",JSONPath=".status.startTimestamp"
// +kubebuilder:printcolumn:name="Bytes Done",type="integer",format="int64",JSONPath=".status.progress.bytesDone"
// +kubebuilder:printcolumn:name="Total Bytes",type="integer",format="int64",JSONPath=".status.progress.totalBytes"
// +kubebuilder:printcolumn:name="Storage Location",type="string",JSONPath=".spec.backupStorageLocation"
// +kubebuilder:printcolumn:name="Node",type="string",JSONPath=".status.node"
// +kubebuilder:printcolumn:name="Age",type="date",JSONPath=".metadata.creationTimestamp"
type DataDownload struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// +optional
	Spec DataDownloadSpec `json:"spec,omitempty"`
	// +optional
	Status DataDownloadStatus `json:"status,omitempty"`
}

// DataDownloadList is a list of DataDownloads.
//
// +kubebuilder:object:root=true
type DataDownloadList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []DataDownload `json:"items"`
}
