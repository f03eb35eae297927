package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DeleteBackupRequestSpec names the backup whose data is to be deleted.
type DeleteBackupRequestSpec struct {
	// BackupName is the Backup whose snapshots, record and object are deleted.
	// +kubebuilder:validation:MinLength=1
	BackupName string `json:"backupName"`
}

// DeleteBackupRequestPhase is where a deletion request stands.
// +kubebuilder:validation:Enum=New;InProgress;Processed
type DeleteBackupRequestPhase string

// Phases of a DeleteBackupRequest (Velero's values).
const (
	DeleteBackupRequestPhaseNew        DeleteBackupRequestPhase = "New"
	DeleteBackupRequestPhaseInProgress DeleteBackupRequestPhase = "InProgress"
	DeleteBackupRequestPhaseProcessed  DeleteBackupRequestPhase = "Processed"
)

// DeleteBackupRequestStatus is the outcome of a deletion request.
type DeleteBackupRequestStatus struct {
	// Phase is New, InProgress, or Processed once the request was handled, with or without errors.
	// +optional
	Phase DeleteBackupRequestPhase `json:"phase,omitempty"`
	// Errors says what could not be deleted, and why; empty when everything was deleted.
	// +optional
	// +nullable
	Errors []string `json:"errors,omitempty"`
}

// DeleteBackupRequest asks ferry-server to delete a backup's data: its snapshots and record in
// the repository, then the Backup object. Deleting a Backup object itself (kubectl delete
// backup) removes only the object, and backup sync brings it back from its location.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Backup",type="string",JSONPath=".spec.backupName"
// +kubebuilder:printcolumn:name="Phase",type="string",JSONPath=".status.phase"
// +kubebuilder:printcolumn:name="Age",type="date",JSONPath=".metadata.creationTimestamp"
type DeleteBackupRequest struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// +optional
	Spec DeleteBackupRequestSpec `json:"spec,omitempty"`
	// +optional
	Status DeleteBackupRequestStatus `json:"status,omitempty"`
}

// DeleteBackupRequestList is a list of DeleteBackupRequests.
//
// +kubebuilder:object:root=true
type DeleteBackupRequestList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []DeleteBackupRequest `json:"items"`
}

// Labels Velero puts on the objects of a backup.
const (
	// LabelBackupUID is the UID of the Backup a DeleteBackupRequest is for.
	LabelBackupUID = "velero.io/backup-uid"
	// LabelStorageLocation names the BackupStorageLocation a Backup is stored in; backup sync
	// sets it on the Backups it creates.
	LabelStorageLocation = "velero.io/storage-location"
)
