package v1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferry-backup/ferry/api/shared"
)

// Annotations on pods that choose volumes for the file-system path (Velero's names).
const (
	AnnotationBackupVolumes         = "backup.velero.io/backup-volumes"
	AnnotationBackupVolumesExcludes = "backup.velero.io/backup-volumes-excludes"
)

// Metadata is metadata applied to the objects a backup creates.
type Metadata struct {
	// +optional
	Labels map[string]string `json:"labels,omitempty"`
}

// BackupSpec says what to back up and where.
// +kubebuilder:validation:XValidation:rule="!(has(self.labelSelector) && has(self.orLabelSelectors))",message="labelSelector and orLabelSelectors cannot be used together"
type BackupSpec struct {
	// +optional
	Metadata `json:"metadata,omitempty"`

	// IncludedNamespaces are the namespaces to back up; empty or "*" means all.
	// +optional
	// +nullable
	IncludedNamespaces []string `json:"includedNamespaces,omitempty"`

	// ExcludedNamespaces are left out.
	// +optional
	// +nullable
	ExcludedNamespaces []string `json:"excludedNamespaces,omitempty"`

	// +optional
	// +nullable
	IncludedResources []string `json:"includedResources,omitempty"`
	// +optional
	// +nullable
	ExcludedResources []string `json:"excludedResources,omitempty"`
	// +optional
	// +nullable
	IncludedClusterScopedResources []string `json:"includedClusterScopedResources,omitempty"`
	// +optional
	// +nullable
	ExcludedClusterScopedResources []string `json:"excludedClusterScopedResources,omitempty"`
	// +optional
	// +nullable
	IncludedNamespaceScopedResources []string `json:"includedNamespaceScopedResources,omitempty"`
	// +optional
	// +nullable
	ExcludedNamespaceScopedResources []string `json:"excludedNamespaceScopedResources,omitempty"`

	// LabelSelector selects the pods whose volumes are backed up.
	// +optional
	// +nullable
	LabelSelector *metav1.LabelSelector `json:"labelSelector,omitempty"`

	// OrLabelSelectors selects pods matching any of the selectors.
	// +optional
	// +nullable
	OrLabelSelectors []*metav1.LabelSelector `json:"orLabelSelectors,omitempty"`

	// +optional
	// +nullable
	SnapshotVolumes *bool `json:"snapshotVolumes,omitempty"`

	// TTL is how long the backup is kept.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$`
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('876000h')",message="must be a duration of at most 876000h (100 years)"
	TTL shared.Duration `json:"ttl,omitempty"`

	// VolumeGroupSnapshotLabelKey is the label key that groups claims into one volume group
	// snapshot (Velero 1.18; Ferry keeps it and snapshots each claim alone).
	// +optional
	VolumeGroupSnapshotLabelKey string `json:"volumeGroupSnapshotLabelKey,omitempty"`

	// +optional
	// +nullable
	IncludeClusterResources *bool `json:"includeClusterResources,omitempty"`

	// +optional
	Hooks BackupHooks `json:"hooks,omitempty"`

	// StorageLocation is the BackupStorageLocation to use; the default location when empty.
	// +optional
	StorageLocation string `json:"storageLocation,omitempty"`

	// +optional
	VolumeSnapshotLocations []string `json:"volumeSnapshotLocations,omitempty"`

	// Deprecated: use DefaultVolumesToFsBackup.
	// +optional
	// +nullable
	DefaultVolumesToRestic *bool `json:"defaultVolumesToRestic,omitempty"`

	// DefaultVolumesToFsBackup backs up every pod volume with the file-system path unless the pod
	// opts a volume out with backup.velero.io/backup-volumes-excludes.
	// +optional
	// +nullable
	DefaultVolumesToFsBackup *bool `json:"defaultVolumesToFsBackup,omitempty"`

	// +optional
	// +nullable
	OrderedResources map[string]string `json:"orderedResources,omitempty"`

	// CSISnapshotTimeout bounds the wait for a VolumeSnapshot to become ready.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$`
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('876000h')",message="must be a duration of at most 876000h (100 years)"
	CSISnapshotTimeout shared.Duration `json:"csiSnapshotTimeout,omitempty"`

	// ItemOperationTimeout bounds each volume operation (DataUpload/PodVolumeBackup).
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$`
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('876000h')",message="must be a duration of at most 876000h (100 years)"
	ItemOperationTimeout shared.Duration `json:"itemOperationTimeout,omitempty"`

	// +optional
	// +nullable
	ResourcePolicy *corev1.TypedLocalObjectReference `json:"resourcePolicy,omitempty"`

	// SnapshotMoveData moves CSI snapshot data into the repository (DataUploads).
	// +optional
	// +nullable
	SnapshotMoveData *bool `json:"snapshotMoveData,omitempty"`

	// DataMover names the data mover for DataUploads: "ferry", or "" / "velero" for the built-in one.
	// +optional
	DataMover string `json:"datamover,omitempty"`

	// UploaderConfig tunes the uploader for this backup.
	// +optional
	// +nullable
	UploaderConfig *UploaderConfigForBackup `json:"uploaderConfig,omitempty"`
}

// UploaderConfigForBackup tunes the uploader of one backup.
type UploaderConfigForBackup struct {
	// ParallelFilesUpload is the number of files uploaded at once per volume.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1024
	ParallelFilesUpload int `json:"parallelFilesUpload,omitempty"`
}

// BackupPhase is the lifecycle phase of a Backup.
// +kubebuilder:validation:Enum=New;Queued;ReadyToStart;FailedValidation;InProgress;WaitingForPluginOperations;WaitingForPluginOperationsPartiallyFailed;Finalizing;FinalizingPartiallyFailed;Completed;PartiallyFailed;Failed;Deleting
type BackupPhase string

// Phases of a Backup (Velero's values).
const (
	BackupPhaseNew                                       BackupPhase = "New"
	BackupPhaseQueued                                    BackupPhase = "Queued"
	BackupPhaseReadyToStart                              BackupPhase = "ReadyToStart"
	BackupPhaseFailedValidation                          BackupPhase = "FailedValidation"
	BackupPhaseInProgress                                BackupPhase = "InProgress"
	BackupPhaseWaitingForPluginOperations                BackupPhase = "WaitingForPluginOperations"
	BackupPhaseWaitingForPluginOperationsPartiallyFailed BackupPhase = "WaitingForPluginOperationsPartiallyFailed"
	BackupPhaseFinalizing                                BackupPhase = "Finalizing"
	BackupPhaseFinalizingPartiallyFailed                 BackupPhase = "FinalizingPartiallyFailed"
	BackupPhaseCompleted                                 BackupPhase = "Completed"
	BackupPhasePartiallyFailed                           BackupPhase = "PartiallyFailed"
	BackupPhaseFailed                                    BackupPhase = "Failed"
	BackupPhaseDeleting                                  BackupPhase = "Deleting"
)

// Ended reports whether a Backup in this phase has finished running: Completed, PartiallyFailed,
// Failed or FailedValidation.
func (p BackupPhase) Ended() bool {
	switch p {
	case BackupPhaseCompleted, BackupPhasePartiallyFailed, BackupPhaseFailed, BackupPhaseFailedValidation:
		return true
	}
	return false
}

// BackupStatus is the state and outcome of a Backup.
type BackupStatus struct {
	// +optional
	Version int `json:"version,omitempty"`
	// +optional
	FormatVersion string `json:"formatVersion,omitempty"`
	// Expiration is when the backup may be garbage-collected.
	// +optional
	// +nullable
	Expiration *metav1.Time `json:"expiration,omitempty"`
	// +optional
	Phase BackupPhase `json:"phase,omitempty"`
	// QueuePosition is the backup's place in Velero's queue while it is Queued (Velero 1.18;
	// Ferry keeps it).
	// +optional
	QueuePosition int `json:"queuePosition,omitempty"`
	// +optional
	// +nullable
	ValidationErrors []string `json:"validationErrors,omitempty"`
	// +optional
	// +nullable
	StartTimestamp *metav1.Time `json:"startTimestamp,omitempty"`
	// +optional
	// +nullable
	CompletionTimestamp *metav1.Time `json:"completionTimestamp,omitempty"`
	// +optional
	VolumeSnapshotsAttempted int `json:"volumeSnapshotsAttempted,omitempty"`
	// +optional
	VolumeSnapshotsCompleted int `json:"volumeSnapshotsCompleted,omitempty"`
	// FailureReason says why the whole backup failed.
	// +optional
	FailureReason string `json:"failureReason,omitempty"`
	// +optional
	Warnings int `json:"warnings,omitempty"`
	// +optional
	Errors int `json:"errors,omitempty"`
	// +optional
	// +nullable
	Progress *BackupProgress `json:"progress,omitempty"`
	// +optional
	CSIVolumeSnapshotsAttempted int `json:"csiVolumeSnapshotsAttempted,omitempty"`
	// +optional
	CSIVolumeSnapshotsCompleted int `json:"csiVolumeSnapshotsCompleted,omitempty"`
	// +optional
	BackupItemOperationsAttempted int `json:"backupItemOperationsAttempted,omitempty"`
	// +optional
	BackupItemOperationsCompleted int `json:"backupItemOperationsCompleted,omitempty"`
	// +optional
	BackupItemOperationsFailed int `json:"backupItemOperationsFailed,omitempty"`
	// +optional
	// +nullable
	HookStatus *HookStatus `json:"hookStatus,omitempty"`

	// PodVolumeBackups counts the file-system volume operations by outcome (Ferry).
	// +optional
	// +nullable
	PodVolumeBackups *VolumeOperationCounts `json:"podVolumeBackups,omitempty"`

	// DataUploads counts the data mover's volume operations (spec.snapshotMoveData) by outcome
	// (Ferry). Skipped volumes, of either path, are counted in podVolumeBackups.skipped.
	// +optional
	// +nullable
	DataUploads *VolumeOperationCounts `json:"dataUploads,omitempty"`

	// Conditions are Ferry's detailed observations.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// BackupProgress counts the items of a backup.
type BackupProgress struct {
	// +optional
	TotalItems int `json:"totalItems,omitempty"`
	// +optional
	ItemsBackedUp int `json:"itemsBackedUp,omitempty"`
}

// VolumeOperationCounts counts volume operations of a backup or restore by outcome.
type VolumeOperationCounts struct {
	// +optional
	Total int `json:"total,omitempty"`
	// +optional
	Completed int `json:"completed,omitempty"`
	// +optional
	Failed int `json:"failed,omitempty"`
	// +optional
	Skipped int `json:"skipped,omitempty"`
}

// Backup is a request to back up the volumes of the selected pods.
//
// +kubebuilder:object:root=true
// +kubebuilder:storageversion
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Phase",type="string",JSONPath=".status.phase"
// +kubebuilder:printcolumn:name="Errors",type="integer",JSONPath=".status.errors"
// +kubebuilder:printcolumn:name="Storage Location",type="string",JSONPath=".spec.storageLocation"
// +kubebuilder:printcolumn:name="Started",type="date",JSONPath=".status.startTimestamp"
// +kubebuilder:printcolumn:name="Completed",type="date",JSONPath=".status.completionTimestamp"
// +kubebuilder:printcolumn:name="Expires",type="string",format="date-time",JSONPath=".status.expiration"
// +kubebuilder:printcolumn:name="Age",type="date",JSONPath=".metadata.creationTimestamp"
type Backup struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// +optional
	Spec BackupSpec `json:"spec,omitempty"`
	// +optional
	Status BackupStatus `json:"status,omitempty"`
}

// BackupList is a list of Backups.
//
// +kubebuilder:object:root=true
type BackupList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Backup `json:"items"`
}

// LabelBackupName labels the objects of one backup with its name (Velero's label).
const LabelBackupName = "velero.io/backup-name"

// LabelPVCNamespaceName labels a DataUpload with "<namespace>.<claim>" of its source PVC,
// shortened with a hash when longer than a label value may be (Velero's label).
const LabelPVCNamespaceName = "velero.io/pvc-namespace-name"

// LabelVolumeSnapshotClass on a PVC names the VolumeSnapshotClass its data mover snapshots use,
// instead of the default class of its driver (Velero's label).
const LabelVolumeSnapshotClass = "velero.io/csi-volumesnapshot-class"

// FinalizerUnfinished is on a Backup from its start until it ends. A Backup deleted before then
// has no record in its location yet (backup sync cannot bring it back) and may have written
// snapshots already: ferry-server cancels it and deletes what it wrote, through a
// DeleteBackupRequest, before the object goes. A finished Backup deleted with kubectl loses only
// its object.
const FinalizerUnfinished = "ferry.io/unfinished-backup"

// AnnotationSyncedFrom marks a Backup that backup sync recreated from its record in the named
// storage location. Such a Backup is never started, even before sync has set its status.
const AnnotationSyncedFrom = "ferry.io/synced-from"
