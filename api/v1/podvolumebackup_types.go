package v1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferry-backup/ferry/api/shared"
)

// PodVolumeBackupSpec asks the node-agent on spec.node to back up one volume of one pod through
// the kubelet's pods directory.
type PodVolumeBackupSpec struct {
	// Node is the node the pod runs on; only that node's agent works on this object.
	// +kubebuilder:validation:MinLength=1
	Node string `json:"node"`

	// Pod references the pod whose volume is backed up (namespace, name and uid).
	// +kubebuilder:validation:XValidation:rule="has(self.name) && size(self.name) > 0",message="pod.name is required"
	// +kubebuilder:validation:XValidation:rule="has(self.__namespace__) && size(self.__namespace__) > 0",message="pod.namespace is required"
	Pod corev1.ObjectReference `json:"pod"`

	// Volume is the name of the volume in the pod spec.
	// +kubebuilder:validation:MinLength=1
	Volume string `json:"volume"`

	// BackupStorageLocation is the name of the location holding the repository.
	// +kubebuilder:validation:MinLength=1
	BackupStorageLocation string `json:"backupStorageLocation"`

	// RepoIdentifier identifies the repository inside the location (Velero's restic URL form is
	// accepted and ignored by the kopia uploader).
	RepoIdentifier string `json:"repoIdentifier"`

	// UploaderType is kopia (default) or restic.
	// +kubebuilder:validation:Enum=kopia;restic;""
	// +optional
	UploaderType string `json:"uploaderType"`

	// Tags are attached to the snapshot.
	// +optional
	Tags map[string]string `json:"tags,omitempty"`

	// UploaderSettings tune the uploader for this operation (e.g. ParallelFilesUpload).
	// +optional
	// +nullable
	UploaderSettings *map[string]string `json:"uploaderSettings,omitempty"`

	// Cancel asks the node-agent to stop the operation; it then ends Canceled.
	// +optional
	Cancel bool `json:"cancel,omitempty"`

	// OperationTimeout bounds the whole operation (Ferry; default 4h when empty or 0).
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$`
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('876000h')",message="must be a duration of at most 876000h (100 years)"
	OperationTimeout *shared.Duration `json:"operationTimeout,omitempty"`
}

// PodVolumeBackupStatus is the state and outcome of a pod volume backup.
type PodVolumeBackupStatus struct {
	// Phase is where the operation stands.
	// +optional
	Phase PodVolumePhase `json:"phase,omitempty"`

	// Path is the directory that was backed up, as seen by the node-agent.
	// +optional
	Path string `json:"path,omitempty"`

	// SnapshotID is the Kopia snapshot written on success.
	// +optional
	SnapshotID string `json:"snapshotID,omitempty"`

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

	// Progress is the live progress, updated at most about once a second.
	// +optional
	Progress shared.DataMoveOperationProgress `json:"progress,omitempty"`

	// IncrementalBytes is the number of bytes that were new or changed since the last backup
	// (Velero's field; the same figure as progress.incrementalBytes), written on completion.
	// +optional
	IncrementalBytes int64 `json:"incrementalBytes,omitempty"`

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

// PodVolumeBackup is the backup of one pod volume by the node-agent of the pod's node.
//
// +kubebuilder:object:root=true
// +kubebuilder:storageversion
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=pvb
// +kubebuilder:selectablefield:JSONPath=".spec.node"
// +kubebuilder:printcolumn:name="Status",type="string",JSONPath=".status.phase"
// +kubebuilder:printcolumn:name="Started",type="date",JSONPath=".status.startTimestamp"
// +kubebuilder:printcolumn:name="Bytes Done",type="integer",format="int64",JSONPath=".status.progress.bytesDone"
// +kubebuilder:printcolumn:name="Total Bytes",type="integer",format="int64",JSONPath=".status.progress.totalBytes"
// +kubebuilder:printcolumn:name="Namespace",type="string",JSONPath=".spec.pod.namespace"
// +kubebuilder:printcolumn:name="Pod",type="string",JSONPath=".spec.pod.name"
// +kubebuilder:printcolumn:name="Volume",type="string",JSONPath=".spec.volume"
// +kubebuilder:printcolumn:name="Node",type="string",JSONPath=".spec.node"
// +kubebuilder:printcolumn:name="Age",type="date",JSONPath=".metadata.creationTimestamp"
type PodVolumeBackup struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// +optional
	Spec PodVolumeBackupSpec `json:"spec,omitempty"`
	// +optional
	Status PodVolumeBackupStatus `json:"status,omitempty"`
}

// PodVolumeBackupList is a list of PodVolumeBackups.
//
// +kubebuilder:object:root=true
type PodVolumeBackupList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []PodVolumeBackup `json:"items"`
}

// ConditionEntriesNotBackedUp is set on a Completed PodVolumeBackup whose snapshot lacks entries
// it could not read, or that are FIFOs, sockets or device nodes; its message counts and names
// them. The Backup then ends PartiallyFailed.
const ConditionEntriesNotBackedUp = "EntriesNotBackedUp"

// ConditionMetadataNotPreserved is set on a Completed PodVolumeBackup whose snapshot keeps the
// content of every entry but not all of its metadata: files with several hard links (restored as
// separate copies), entries with extended attributes (ACLs, SELinux labels, capabilities; not
// stored), names that are not valid UTF-8 (restored with U+FFFD); its message counts and names
// them. It does not make the Backup PartiallyFailed: the Backup gets the same condition, listing
// the volumes, and counts them in status.warnings.
const ConditionMetadataNotPreserved = "MetadataNotPreserved"

// AnnotationPVCName on a PodVolumeBackup names the claim of its volume, when it has one
// (Velero's annotation; Velero names the snapshot's source after it).
const AnnotationPVCName = "velero.io/pvc-name"
