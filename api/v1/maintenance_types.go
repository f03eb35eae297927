package v1

import "time"

// Maintenance on request is Ferry's own (Velero has none): annotations ask for it and hold the
// answer, so that the CLI, which talks to the API server only, can ask and read.
const (
	// AnnotationMaintenanceRequested on a BackupRepository asks ferry-server for one maintenance
	// run now: "<quick|full>@<when asked, RFC 3339>", e.g. "full@2026-11-20T10:00:00.5Z". The
	// run starts when no maintenance Job of the repository runs, and is recorded in
	// status.recentMaintenance as scheduled runs are. A new value is a new request; a value
	// already answered (AnnotationMaintenanceAnswer) is not run again.
	AnnotationMaintenanceRequested = "ferry.io/maintenance-requested"
	// AnnotationMaintenanceAnswer on a BackupRepository holds the result of the last requested
	// maintenance run: a MaintenanceAnswer as JSON.
	AnnotationMaintenanceAnswer = "ferry.io/maintenance-answer"
)

// MaintenanceAnswer is the result of one requested maintenance run.
//
// +kubebuilder:object:generate=false
type MaintenanceAnswer struct {
	// Request is the AnnotationMaintenanceRequested value this answers.
	Request string `json:"request"`
	// Mode is quick or full.
	Mode string `json:"mode"`
	// Job names the Job that ran; empty when none ran (the request could not be read).
	Job       string    `json:"job,omitempty"`
	Start     time.Time `json:"start"`
	End       time.Time `json:"end"`
	Succeeded bool      `json:"succeeded"`
	Message   string    `json:"message,omitempty"`
}
