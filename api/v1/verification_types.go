package v1

import "time"

// Backup verification is Ferry's own (Velero has none): annotations ask for it and hold the
// result, so that the CLI, which talks to the API server only, can ask and read.
const (
	// AnnotationVerifyRequested on a Backup asks ferry-server to verify the backup's snapshots:
	// "<percent>@<when asked, RFC 3339>", e.g. "10@2026-11-20T10:00:00Z". The percent (0–100) of
	// files read back in full; the others are checked in the index and the pack listing. A new
	// value is a new request.
	AnnotationVerifyRequested = "ferry.io/verify-requested"
	// AnnotationLastVerification on a Backup holds the result of its last verification, and on
	// a BackupRepository the result of the last verification of a backup of its location: a
	// BackupVerification as JSON.
	AnnotationLastVerification = "ferry.io/last-verification"
	// AnnotationVerifyEvery on a BackupRepository makes ferry-server verify the latest completed
	// backup of its location that often (a Go duration, e.g. "168h"; unset or 0: never).
	AnnotationVerifyEvery = "ferry.io/verify-every"
	// AnnotationVerifyPercent on a BackupRepository is the percent of files those periodic
	// verifications read back in full (default 10).
	AnnotationVerifyPercent = "ferry.io/verify-percent"
)

// BackupVerification is the result of one verification of a backup.
//
// +kubebuilder:object:generate=false
type BackupVerification struct {
	// Request is the AnnotationVerifyRequested value this answers.
	Request string  `json:"request"`
	Backup  string  `json:"backup"`
	Percent float64 `json:"percent"`
	// Job names the Job that verified, empty when none ran (the backup cannot be verified).
	Job   string    `json:"job,omitempty"`
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// Completed is true when every volume was verified; Message says why not.
	Completed bool   `json:"completed"`
	Message   string `json:"message,omitempty"`
	// Errors counts the damaged entries found in all volumes.
	Errors  int64                `json:"errors"`
	Volumes []VolumeVerification `json:"volumes,omitempty"`
}

// VolumeVerification is the result of verifying one volume's snapshot.
//
// +kubebuilder:object:generate=false
type VolumeVerification struct {
	// Volume names the volume: <namespace>/<pod>/<volume>, or <namespace>/pvc/<claim> for a
	// claim of the data mover.
	Volume     string `json:"volume"`
	SnapshotID string `json:"snapshotID,omitempty"`
	// Files counts the entries checked in the index; FilesRead and BytesRead the sample read
	// back in full.
	Files     int64 `json:"files"`
	FilesRead int64 `json:"filesRead"`
	BytesRead int64 `json:"bytesRead"`
	// Errors counts the damaged entries; FirstErrors names the first few ("<path>: <problem>").
	Errors      int64    `json:"errors"`
	FirstErrors []string `json:"firstErrors,omitempty"`
	// Message says why the volume could not be verified (no snapshot, unreadable repository).
	Message string `json:"message,omitempty"`
}

// Failed reports whether the verification found damage or could not verify everything.
func (v BackupVerification) Failed() bool { return v.Errors > 0 || !v.Completed }
