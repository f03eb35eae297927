package v1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferry-backup/ferry/api/shared"
)

// RestoreSpec says which backup to restore and into where.
// +kubebuilder:validation:XValidation:rule="(has(self.backupName) && size(self.backupName) > 0) || (has(self.scheduleName) && size(self.scheduleName) > 0)",message="backupName (or scheduleName) is required"
// +kubebuilder:validation:XValidation:rule="!(has(self.labelSelector) && has(self.orLabelSelectors))",message="labelSelector and orLabelSelectors cannot be used together"
type RestoreSpec struct {
	// BackupName is the Backup to restore from.
	// +optional
	BackupName string `json:"backupName,omitempty"`

	// ScheduleName restores the latest successful backup of this schedule when backupName is empty.
	// +optional
	ScheduleName string `json:"scheduleName,omitempty"`

	// IncludedNamespaces are the backed-up namespaces to restore; empty or "*" means all.
	// +optional
	// +nullable
	IncludedNamespaces []string `json:"includedNamespaces,omitempty"`
	// +optional
	// +nullable
	ExcludedNamespaces []string `json:"excludedNamespaces,omitempty"`
	// +optional
	// +nullable
	IncludedResources []string `json:"includedResources,omitempty"`
	// +optional
	// +nullable
	ExcludedResources []string `json:"excludedResources,omitempty"`

	// NamespaceMapping restores a backed-up namespace (key) into another namespace (value).
	// +optional
	NamespaceMapping map[string]string `json:"namespaceMapping,omitempty"`

	// +optional
	// +nullable
	LabelSelector *metav1.LabelSelector `json:"labelSelector,omitempty"`
	// +optional
	// +nullable
	OrLabelSelectors []*metav1.LabelSelector `json:"orLabelSelectors,omitempty"`
	// +optional
	// +nullable
	RestorePVs *bool `json:"restorePVs,omitempty"`
	// +optional
	// +nullable
	RestoreStatus *RestoreStatusSpec `json:"restoreStatus,omitempty"`
	// +optional
	// +nullable
	PreserveNodePorts *bool `json:"preserveNodePorts,omitempty"`
	// +optional
	// +nullable
	IncludeClusterResources *bool `json:"includeClusterResources,omitempty"`
	// +optional
	Hooks RestoreHooks `json:"hooks,omitempty"`
	// +optional
	// +nullable
	// +kubebuilder:validation:Enum=none;update
	ExistingResourcePolicy PolicyType `json:"existingResourcePolicy,omitempty"`

	// ItemOperationTimeout bounds each volume operation (DataDownload/PodVolumeRestore).
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$`
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('876000h')",message="must be a duration of at most 876000h (100 years)"
	ItemOperationTimeout shared.Duration `json:"itemOperationTimeout,omitempty"`

	// +optional
	// +nullable
	ResourceModifier *corev1.TypedLocalObjectReference `json:"resourceModifier,omitempty"`

	// UploaderConfig tunes the restore writers.
	// +optional
	// +nullable
	UploaderConfig *UploaderConfigForRestore `json:"uploaderConfig,omitempty"`

	// UploaderType forces the uploader used to read the backup: kopia, or restic for backups made
	// by the legacy restic integration (Ferry; the seed's "spec.uploaderType: restic").
	// +optional
	// +kubebuilder:validation:Enum=kopia;restic;""
	UploaderType string `json:"uploaderType,omitempty"`
}

// PolicyType says what to do with objects that already exist at restore time.
type PolicyType string

// Existing-resource policies.
const (
	PolicyTypeNone   PolicyType = "none"
	PolicyTypeUpdate PolicyType = "update"
)

// RestoreStatusSpec selects resources whose status is restored too.
type RestoreStatusSpec struct {
	// +optional
	// +nullable
	IncludedResources []string `json:"includedResources,omitempty"`
	// +optional
	// +nullable
	ExcludedResources []string `json:"excludedResources,omitempty"`
}

// UploaderConfigForRestore tunes the writers of one restore.
type UploaderConfigForRestore struct {
	// WriteSparseFiles writes runs of zeros as holes.
	// +optional
	// +nullable
	WriteSparseFiles *bool `json:"writeSparseFiles,omitempty"`
	// ParallelFilesDownload is the number of files written at once per volume.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1024
	ParallelFilesDownload int `json:"parallelFilesDownload,omitempty"`
}

// RestorePhase is the lifecycle phase of a Restore.
// +kubebuilder:validation:Enum=New;FailedValidation;InProgress;WaitingForPluginOperations;WaitingForPluginOperationsPartiallyFailed;Finalizing;FinalizingPartiallyFailed;Completed;PartiallyFailed;Failed
type RestorePhase string

// Phases of a Restore (Velero's values).
const (
	RestorePhaseNew              RestorePhase = "New"
	RestorePhaseFailedValidation RestorePhase = "FailedValidation"
	RestorePhaseInProgress       RestorePhase = "InProgress"
	RestorePhaseCompleted        RestorePhase = "Completed"
	RestorePhasePartiallyFailed  RestorePhase = "PartiallyFailed"
	RestorePhaseFailed           RestorePhase = "Failed"
)

// RestoreStatus is the state and outcome of a Restore.
type RestoreStatus struct {
	// +optional
	Phase RestorePhase `json:"phase,omitempty"`
	// +optional
	// +nullable
	ValidationErrors []string `json:"validationErrors,omitempty"`
	// +optional
	Warnings int `json:"warnings,omitempty"`
	// +optional
	Errors int `json:"errors,omitempty"`
	// FailureReason says why the whole restore failed.
	// +optional
	FailureReason string `json:"failureReason,omitempty"`
	// +optional
	// +nullable
	StartTimestamp *metav1.Time `json:"startTimestamp,omitempty"`
	// +optional
	// +nullable
	CompletionTimestamp *metav1.Time `json:"completionTimestamp,omitempty"`
	// +optional
	// +nullable
	Progress *RestoreProgress `json:"progress,omitempty"`
	// +optional
	RestoreItemOperationsAttempted int `json:"restoreItemOperationsAttempted,omitempty"`
	// +optional
	RestoreItemOperationsCompleted int `json:"restoreItemOperationsCompleted,omitempty"`
	// +optional
	RestoreItemOperationsFailed int `json:"restoreItemOperationsFailed,omitempty"`
	// +optional
	// +nullable
	HookStatus *HookStatus `json:"hookStatus,omitempty"`

	// PodVolumeRestores counts the file-system volume operations by outcome (Ferry).
	// +optional
	// +nullable
	PodVolumeRestores *VolumeOperationCounts `json:"podVolumeRestores,omitempty"`

	// DataDownloads counts the data mover's volume operations (claims re-created from the
	// backup) by outcome (Ferry). Skipped volumes, of either path, are counted in
	// podVolumeRestores.skipped.
	// +optional
	// +nullable
	DataDownloads *VolumeOperationCounts `json:"dataDownloads,omitempty"`

	// Conditions are Ferry's detailed observations.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// RestoreProgress counts the items of a restore.
type RestoreProgress struct {
	// +optional
	TotalItems int `json:"totalItems,omitempty"`
	// +optional
	ItemsRestored int `json:"itemsRestored,omitempty"`
}

// Restore is a request to restore the volumes of a backup.
//
// +kubebuilder:object:root=true
// +kubebuilder:storageversion
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Backup",type="string",JSONPath=".spec.backupName"
// +kubebuilder:printcolumn:name="Phase",type="string",JSONPath=".status.phase"
// +kubebuilder:printcolumn:name="Errors",type="integer",JSONPath=".status.errors"
// +kubebuilder:printcolumn:name="Started",type="date",JSONPath=".status.startTimestamp"
// +kubebuilder:printcolumn:name="Completed",type="date",JSONPath=".status.completionTimestamp"
// +kubebuilder:printcolumn:name="Age",type="date",JSONPath=".metadata.creationTimestamp"
type Restore struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// +optional
	Spec RestoreSpec `json:"spec,omitempty"`
	// +optional
	Status RestoreStatus `json:"status,omitempty"`
}

// RestoreList is a list of Restores.
//
// +kubebuilder:object:root=true
type RestoreList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Restore `json:"items"`
}

// Labels of the objects a restore makes (Velero's).
const (
	// LabelRestoreName is the name of the Restore an object belongs to.
	LabelRestoreName = "velero.io/restore-name"
	// LabelRestoreUID is the UID of the Restore an object belongs to.
	LabelRestoreUID = "velero.io/restore-uid"
	// LabelDynamicPVRestore is on the selector of a PVC that a restore re-created, and on the
	// PersistentVolume the data mover filled for it: the PV with the same value binds to it.
	LabelDynamicPVRestore = "velero.io/dynamic-pv-restore"
)
