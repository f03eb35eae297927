// Package backuprecord provides the record of a backup that ferry-server keeps inside the
// repository: which volumes it holds, in which snapshots, and the claims to recreate them, so
// that a fresh cluster with the storage location and the password finds its backups.
package backuprecord

import (
	"time"

	corev1 "k8s.io/api/core/v1"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
)

// Kind is the record kind in the repository.
const Kind = "backup"

// Record describes one backup.
type Record struct {
	Name            string    `json:"name"`
	UID             string    `json:"uid"`
	StorageLocation string    `json:"storageLocation"`
	Started         time.Time `json:"started"`
	Completed       time.Time `json:"completed"`
	Phase           string    `json:"phase"`
	// Expiration is when the backup expires; zero (records of older versions) never expires.
	Expiration time.Time `json:"expiration,omitzero"`
	// Spec is the Backup's spec, so that backup sync recreates the object as it was.
	Spec *velerov1.BackupSpec `json:"spec,omitempty"`
	// Labels are the Backup's labels (its schedule's among them), which sync gives back.
	Labels  map[string]string `json:"labels,omitempty"`
	Volumes []Volume          `json:"volumes"`
	// Skipped says which volumes were not backed up and why.
	Skipped []string `json:"skipped,omitempty"`
}

// Paths that make a volume's snapshot. Both write a Kopia snapshot of the volume's files into
// the repository that holds the volume's namespace, so either restores through either.
const (
	// PathPodVolume is the file-system path: a PodVolumeBackup read the volume through its pod.
	PathPodVolume = "podvolume"
	// PathDataMover is the CSI data mover: a DataUpload read a VolumeSnapshot of the claim.
	PathDataMover = "datamover"
)

// Volume is one backed-up volume: a pod volume, or a claim (which no pod may mount).
type Volume struct {
	Namespace string `json:"namespace"`
	// Pod and Volume name the pod volume; for a claim the data mover backed up, they may be empty.
	Pod    string `json:"pod"`
	Volume string `json:"volume"`
	Claim  string `json:"claim,omitempty"`
	// Path is the path that made the snapshot, PathPodVolume or PathDataMover; records of older
	// versions leave it empty, which means PathPodVolume (use DataPath).
	Path       string `json:"path,omitempty"`
	Node       string `json:"node"`
	SnapshotID string `json:"snapshotID,omitempty"`
	// RepositoryNamespace says which repository of the location holds the snapshot: in Velero's
	// layout the namespace whose repository it is (<prefix>/kopia/<namespace>/, the volume's
	// namespace); empty, the location's own repository, which also holds this record.
	RepositoryNamespace string `json:"repositoryNamespace,omitempty"`
	Phase               string `json:"phase"`
	Message             string `json:"message,omitempty"`
	Bytes               int64  `json:"bytes"`
	Files               int64  `json:"files"`
	// ClaimSpec is the claim's spec at backup time, to recreate it.
	ClaimSpec *corev1.PersistentVolumeClaimSpec `json:"claimSpec,omitempty"`
}

// DataPath is the path that made the volume's snapshot, PathPodVolume for records of older
// versions.
func (v Volume) DataPath() string {
	if v.Path == "" {
		return PathPodVolume
	}
	return v.Path
}
