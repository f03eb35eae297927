package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferry-backup/ferry/api/shared"
)

// Repository types (BackupRepository.spec.repositoryType) and uploader types
// (PodVolumeBackup/PodVolumeRestore.spec.uploaderType).
const (
	RepositoryTypeKopia  = "kopia"
	RepositoryTypeRestic = "restic"
	UploaderTypeKopia    = "kopia"
	UploaderTypeRestic   = "restic"
)

// BackupRepositorySpec names the Kopia (or legacy restic) repository holding the volume data of
// one namespace in one storage location.
type BackupRepositorySpec struct {
	// VolumeNamespace is the namespace whose volume data the repository holds.
	VolumeNamespace string `json:"volumeNamespace"`

	// BackupStorageLocation is the name of the location holding the repository.
	// +kubebuilder:validation:MinLength=1
	BackupStorageLocation string `json:"backupStorageLocation"`

	// RepositoryType is kopia (default) or restic (read-only, for restoring legacy backups).
	// +kubebuilder:validation:Enum=kopia;restic;""
	// +optional
	RepositoryType string `json:"repositoryType"`

	// ResticIdentifier is the restic repository URL; used only when repositoryType is restic.
	// +optional
	ResticIdentifier string `json:"resticIdentifier,omitempty"`

	// MaintenanceFrequency is how often quick maintenance runs.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$`
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('876000h')",message="must be a duration of at most 876000h (100 years)"
	MaintenanceFrequency shared.Duration `json:"maintenanceFrequency"`

	// RepositoryConfig holds repository settings (e.g. cacheLimitMB).
	// +optional
	// +nullable
	RepositoryConfig map[string]string `json:"repositoryConfig,omitempty"`
}

// BackupRepositoryPhase says whether the repository can be used.
// +kubebuilder:validation:Enum=New;Ready;NotReady
type BackupRepositoryPhase string

// Phases of a BackupRepository.
const (
	BackupRepositoryPhaseNew      BackupRepositoryPhase = "New"
	BackupRepositoryPhaseReady    BackupRepositoryPhase = "Ready"
	BackupRepositoryPhaseNotReady BackupRepositoryPhase = "NotReady"
)

// BackupRepositoryMaintenanceResult is the outcome of one maintenance run.
// +kubebuilder:validation:Enum=Succeeded;Failed
type BackupRepositoryMaintenanceResult string

// Maintenance outcomes.
const (
	BackupRepositoryMaintenanceSucceeded BackupRepositoryMaintenanceResult = "Succeeded"
	BackupRepositoryMaintenanceFailed    BackupRepositoryMaintenanceResult = "Failed"
)

// BackupRepositoryMaintenanceStatus records one maintenance run.
type BackupRepositoryMaintenanceStatus struct {
	// Result is Succeeded or Failed.
	// +optional
	Result BackupRepositoryMaintenanceResult `json:"result,omitempty"`

	// StartTimestamp is when the run started.
	// +optional
	// +nullable
	StartTimestamp *metav1.Time `json:"startTimestamp,omitempty"`

	// CompleteTimestamp is when the run ended.
	// +optional
	// +nullable
	CompleteTimestamp *metav1.Time `json:"completeTimestamp,omitempty"`

	// Message describes the run (its mode, what it reclaimed, or why it failed).
	// +optional
	Message string `json:"message,omitempty"`
}

// BackupRepositoryStatus is what the server last observed of the repository.
type BackupRepositoryStatus struct {
	// Phase is Ready once the repository was created or connected to.
	// +optional
	Phase BackupRepositoryPhase `json:"phase,omitempty"`

	// Message explains the phase.
	// +optional
	Message string `json:"message,omitempty"`

	// LastMaintenanceTime is when maintenance last succeeded.
	// +optional
	// +nullable
	LastMaintenanceTime *metav1.Time `json:"lastMaintenanceTime,omitempty"`

	// RecentMaintenance lists the latest maintenance runs, oldest first, trimmed to the
	// node-agent ConfigMap's keepLatestMaintenance.
	// +optional
	RecentMaintenance []BackupRepositoryMaintenanceStatus `json:"recentMaintenance,omitempty"`
}

// BackupRepository is the repository of one namespace's volume data in one storage location.
//
// +kubebuilder:object:root=true
// +kubebuilder:storageversion
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=repo
// +kubebuilder:printcolumn:name="Phase",type="string",JSONPath=".status.phase"
// +kubebuilder:printcolumn:name="Storage Location",type="string",JSONPath=".spec.backupStorageLocation"
// +kubebuilder:printcolumn:name="Namespace",type="string",JSONPath=".spec.volumeNamespace"
// +kubebuilder:printcolumn:name="Repository Type",type="string",JSONPath=".spec.repositoryType"
// +kubebuilder:printcolumn:name="Last Maintenance",type="date",JSONPath=".status.lastMaintenanceTime"
// +kubebuilder:printcolumn:name="Age",type="date",JSONPath=".metadata.creationTimestamp"
type BackupRepository struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// +optional
	Spec BackupRepositorySpec `json:"spec,omitempty"`
	// +optional
	Status BackupRepositoryStatus `json:"status,omitempty"`
}

// BackupRepositoryList is a list of BackupRepositories.
//
// +kubebuilder:object:root=true
type BackupRepositoryList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []BackupRepository `json:"items"`
}
