package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	corev1 "k8s.io/api/core/v1"

	"github.com/ferry-backup/ferry/api/shared"
)

// Storage providers Ferry can read and write. Velero's plugin names ("velero.io/aws") are
// accepted for the S3 provider too.
const (
	ProviderAWS        = "aws"
	ProviderFilesystem = "filesystem"
)

// BackupStorageLocationSpec says where backups are stored and how to reach that place.
// +kubebuilder:validation:XValidation:rule="self.provider != 'filesystem' || (has(self.config) && 'path' in self.config && self.config['path'].startsWith('/'))",message="config.path must be an absolute directory when provider is filesystem"
type BackupStorageLocationSpec struct {
	// Provider is the kind of storage: "aws" (any S3-compatible object store) or "filesystem"
	// (a directory every Ferry process can reach).
	// +kubebuilder:validation:MinLength=1
	Provider string `json:"provider"`

	// Config holds provider settings. aws: region, s3Url (endpoint), s3ForcePathStyle,
	// insecureSkipTLSVerify. filesystem: path (absolute directory).
	// +optional
	Config map[string]string `json:"config,omitempty"`

	// Credential selects the key of a Secret, in the install namespace, holding the provider
	// credentials (an AWS credentials file for "aws").
	// +optional
	// +nullable
	Credential *corev1.SecretKeySelector `json:"credential,omitempty"`

	StorageType `json:",inline"`

	// Default marks the location used when a Backup names none.
	// +optional
	Default bool `json:"default,omitempty"`

	// AccessMode is ReadWrite (default) or ReadOnly; a ReadOnly location is never written.
	// +kubebuilder:default=ReadWrite
	// +optional
	AccessMode BackupStorageLocationAccessMode `json:"accessMode,omitempty"`

	// BackupSyncPeriod is how often backup records are read back from the location; 0 disables it.
	// +optional
	// +nullable
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$`
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('876000h')",message="must be a duration of at most 876000h (100 years)"
	BackupSyncPeriod *shared.Duration `json:"backupSyncPeriod,omitempty"`

	// ValidationFrequency is how often the location's reachability is checked.
	// +optional
	// +nullable
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$`
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('876000h')",message="must be a duration of at most 876000h (100 years)"
	ValidationFrequency *shared.Duration `json:"validationFrequency,omitempty"`
}

// StorageType is the kind of storage a location uses; object storage is the only one.
type StorageType struct {
	// ObjectStorage names the bucket and prefix.
	ObjectStorage *ObjectStorageLocation `json:"objectStorage"`
}

// ObjectStorageLocation names a bucket (for "filesystem": a directory below config.path) and an
// optional prefix inside it.
type ObjectStorageLocation struct {
	// Bucket is the bucket name.
	// +kubebuilder:validation:MinLength=1
	Bucket string `json:"bucket"`

	// Prefix is the path inside the bucket under which Ferry stores its data.
	// +optional
	Prefix string `json:"prefix,omitempty"`

	// CACert is a PEM bundle used to verify the storage's TLS certificate.
	// +optional
	CACert []byte `json:"caCert,omitempty"`

	// CACertRef names a key of a Secret in the location's namespace holding the PEM bundle
	// (Velero 1.18; Velero deprecates caCert for it). Ferry keeps it but reads only caCert.
	// +optional
	CACertRef *corev1.SecretKeySelector `json:"caCertRef,omitempty"`
}

// BackupStorageLocationPhase says whether the location can be used.
// +kubebuilder:validation:Enum=Available;Unavailable
type BackupStorageLocationPhase string

// Phases of a BackupStorageLocation.
const (
	BackupStorageLocationPhaseAvailable   BackupStorageLocationPhase = "Available"
	BackupStorageLocationPhaseUnavailable BackupStorageLocationPhase = "Unavailable"
)

// BackupStorageLocationAccessMode is what Ferry may do with a location.
// +kubebuilder:validation:Enum=ReadOnly;ReadWrite
type BackupStorageLocationAccessMode string

// Access modes of a BackupStorageLocation.
const (
	BackupStorageLocationAccessModeReadOnly  BackupStorageLocationAccessMode = "ReadOnly"
	BackupStorageLocationAccessModeReadWrite BackupStorageLocationAccessMode = "ReadWrite"
)

// BackupStorageLocationStatus is what the server last observed of the location.
type BackupStorageLocationStatus struct {
	// Phase is Available when the last validation reached the storage with the credentials.
	// +optional
	Phase BackupStorageLocationPhase `json:"phase,omitempty"`

	// Message explains the phase, e.g. why the location is Unavailable.
	// +optional
	Message string `json:"message,omitempty"`

	// LastSyncedTime is when backup records were last read from the location.
	// +optional
	// +nullable
	LastSyncedTime *metav1.Time `json:"lastSyncedTime,omitempty"`

	// LastValidationTime is when the location was last checked.
	// +optional
	// +nullable
	LastValidationTime *metav1.Time `json:"lastValidationTime,omitempty"`

	// ObservedGeneration is the spec generation the last validation checked: a changed spec is
	// checked at once, an unchanged one every spec.validationFrequency.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// LastSyncedRevision is kept for compatibility with Velero and not used.
	// +optional
	LastSyncedRevision types.UID `json:"lastSyncedRevision,omitempty"`

	// AccessMode is kept for compatibility with Velero and not used; see spec.accessMode.
	// +optional
	AccessMode BackupStorageLocationAccessMode `json:"accessMode,omitempty"`
}

// BackupStorageLocation is a place where backup data and records are stored: one Kopia
// repository per location (or per location and namespace).
//
// +kubebuilder:object:root=true
// +kubebuilder:storageversion
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=bsl
// +kubebuilder:printcolumn:name="Phase",type="string",JSONPath=".status.phase"
// +kubebuilder:printcolumn:name="Provider",type="string",JSONPath=".spec.provider"
// +kubebuilder:printcolumn:name="Bucket",type="string",JSONPath=".spec.objectStorage.bucket"
// +kubebuilder:printcolumn:name="Access Mode",type="string",JSONPath=".spec.accessMode"
// +kubebuilder:printcolumn:name="Last Validated",type="date",JSONPath=".status.lastValidationTime"
// +kubebuilder:printcolumn:name="Default",type="boolean",JSONPath=".spec.default"
// +kubebuilder:printcolumn:name="Age",type="date",JSONPath=".metadata.creationTimestamp"
type BackupStorageLocation struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   BackupStorageLocationSpec   `json:"spec,omitempty"`
	Status BackupStorageLocationStatus `json:"status,omitempty"`
}

// BackupStorageLocationList is a list of BackupStorageLocations.
//
// +kubebuilder:object:root=true
type BackupStorageLocationList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []BackupStorageLocation `json:"items"`
}
