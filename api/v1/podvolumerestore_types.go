package v1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferry-backup/ferry/api/shared"
)

// PodVolumeRestoreSpec asks the node-agent of the target pod's node to write a snapshot into one
// volume of that pod.
type PodVolumeRestoreSpec struct {
	// Pod references the pod whose volume is restored (namespace, name and uid).
	// +kubebuilder:validation:XValidation:rule="has(self.name) && size(self.name) > 0",message="pod.name is required"
	// +kubebuilder:validation:XValidation:rule="has(self.__namespace__) && size(self.__namespace__) > 0",message="pod.namespace is required"
	Pod corev1.ObjectReference `json:"pod"`

	// Volume is the name of the volume in the pod spec.
	// +kubebuilder:validation:MinLength=1
	Volume string `json:"volume"`

	// BackupStorageLocation is the name of the location holding the repository.
	// +kubebuilder:validation:MinLength=1
	BackupStorageLocation string `json:"backupStorageLocation"`

	// RepoIdentifier identifies the repository inside the location.
	RepoIdentifier string `json:"repoIdentifier"`

	// UploaderType is kopia (default) or restic (legacy backups).
	// +kubebuilder:validation:Enum=kopia;restic;""
	// +optional
	UploaderType string `json:"uploaderType"`

	// SnapshotID is the snapshot to restore.
	// +kubebuilder:validation:MinLength=1
	SnapshotID string `json:"snapshotID"`

	// SourceNamespace is the namespace the volume was backed up from (it selects the repository
	// when repositories are per namespace).
	SourceNamespace string `json:"sourceNamespace"`

	// UploaderSettings tune the restore (e.g. WriteSparseFiles, ParallelFilesDownload).
	// +optional
	// +nullable
	UploaderSettings *map[string]string `json:"uploaderSettings,omitempty"`

	// Cancel asks the node-agent to stop the operation; it then ends Canceled.
	// +optional
	Cancel bool `json:"cancel,omitempty"`

	// SnapshotSize is the logical size in bytes of the snapshot (Velero 1.18 sets it; Ferry
	// keeps it).
	// +optional
	SnapshotSize int64 `json:"snapshotSize,omitempty"`

	// Node is the node of the target pod (Ferry; when empty the node-agent reads it from the pod).
	// +optional
	Node string `json:"node,omitempty"`

	// OperationTimeout bounds the whole operation (Ferry; default 4h when empty or 0).
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$`
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('876000h')",message="must be a duration of at most 876000h (100 years)"
	OperationTimeout *shared.Duration `json:"operationTimeout,omitempty"`
}

// PodVolumeRestoreStatus is the state and outcome of a pod volume restore.
type PodVolumeRestoreStatus struct {
	// Phase is where the operation stands.
	// +optional
	Phase PodVolumePhase `json:"phase,omitempty"`

	// Message explains a failure or cancellation.
	// +optional
	Message string `json:"message,omitempty"`

	// StartTimestamp is when data started moving.
	// +optional
	// +nullable
	StartTimestamp *metav1.Time `json:"startTimestamp,omitempty"`

	// CompletionTimestamp is when the operation ended, whatever its outcome.
	// +optional
	// +nullable
	CompletionTimestamp *metav1.Time `json:"completionTimestamp,omitempty"`

	// AcceptedTimestamp is when a node-agent accepted the operation.
	// +optional
	// +nullable
	AcceptedTimestamp *metav1.Time `json:"acceptedTimestamp,omitempty"`

	// Node is the node whose agent ran the restore.
	// +optional
	Node string `json:"node,omitempty"`

	// Progress is the live progress, updated at most about once a second.
	// +optional
	Progress shared.DataMoveOperationProgress `json:"progress,omitempty"`

	// Conditions are Ferry's detailed observations.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// Attempts is how often a node-agent started moving the data (Ferry's field). An operation
	// interrupted by its node-agent stopping is resumed; one started 3 times is failed instead
	// of being tried again.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Attempts int32 `json:"attempts,omitempty"`
}

// PodVolumeRestore is the restore of one snapshot into one pod volume.
//
// +kubebuilder:object:root=true
// +kubebuilder:storageversion
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=pvr
// +kubebuilder:selectablefield:JSONPath=".spec.node"
// +kubebuilder:printcolumn:name="Status",type="string",JSONPath=".status.phase"
// +kubebuilder:printcolumn:name="Started",type="date",JSONPath=".status.startTimestamp"
// +kubebuilder:printcolumn:name="Bytes Done",type="integer",format="int64",JSONPath=".status.progress.bytesDone"
// +kubebuilder:printcolumn:name="Total Bytes",type="integer",format="int64",JSONPath=".status.progress.totalBytes"
// +kubebuilder:printcolumn:name="Namespace",type="string",JSONPath=".spec.pod.namespace"
// +kubebuilder:printcolumn:name="Pod",type="string",JSONPath=".spec.pod.name"
// +kubebuilder:printcolumn:name="Volume",type="string",JSONPath=".spec.volume"
// +kubebuilder:printcolumn:name="Node",type="string",JSONPath=".status.node"
// +kubebuilder:printcolumn:name="Age",type="date",JSONPath=".metadata.creationTimestamp"
type PodVolumeRestore struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// +optional
	Spec PodVolumeRestoreSpec `json:"spec,omitempty"`
	// +optional
	Status PodVolumeRestoreStatus `json:"status,omitempty"`
}

// PodVolumeRestoreList is a list of PodVolumeRestores.
//
// +kubebuilder:object:root=true
type PodVolumeRestoreList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []PodVolumeRestore `json:"items"`
}
