package exposer

import (
	"encoding/json"
	"fmt"

	"github.com/ferry-backup/ferry/api/shared"
)

// What a mover reports. The mover pod writes Kubernetes Events on its DataUpload or DataDownload,
// labelled with LabelOperation: Started, one Progress event updated in place (its annotation
// AnnotationProgress holds the figures), and Completed, Failed or Canceled with AnnotationResult.
// The same Result is the container's termination message, which outlives dropped Events: the
// node-agent takes the outcome from there.
const (
	ReasonStarted   = "Started"
	ReasonProgress  = "Progress"
	ReasonCompleted = "Completed"
	ReasonFailed    = "Failed"
	ReasonCanceled  = "Canceled"

	AnnotationProgress = "ferry.io/progress"
	AnnotationResult   = "ferry.io/result"

	// MoverComponent is the Events' source component.
	MoverComponent = "ferry-datamover"
	// MoverContainer is the mover pod's container.
	MoverContainer = "mover"
)

// ProgressEventName is the name of the Event a mover updates with its progress.
func ProgressEventName(operation string) string { return operation + ".progress" }

// Result is a mover's outcome.
type Result struct {
	// Phase is Completed, Failed or Canceled.
	Phase   string `json:"phase"`
	Message string `json:"message,omitempty"`
	// SnapshotID is the snapshot a DataUpload wrote.
	SnapshotID string `json:"snapshotID,omitempty"`
	// Progress holds the final figures.
	Progress shared.DataMoveOperationProgress `json:"progress"`
	// NotBackedUp counts entries a DataUpload could not read (unreadable files, FIFOs, sockets,
	// devices); NotBackedUpMessages holds the first few.
	NotBackedUp         int      `json:"notBackedUp,omitempty"`
	NotBackedUpMessages []string `json:"notBackedUpMessages,omitempty"`
}

// Encode returns the result as the termination message and annotation carry it; Kubernetes
// keeps at most 4096 bytes of a termination message, so long messages are shortened.
func (r Result) Encode() string {
	for {
		data, err := json.Marshal(r)
		if err != nil || len(data) <= 4000 {
			return string(data)
		}
		switch {
		case len(r.NotBackedUpMessages) > 0:
			r.NotBackedUpMessages = r.NotBackedUpMessages[:len(r.NotBackedUpMessages)-1]
		case len(r.Message) > 1000:
			r.Message = r.Message[:1000] + "…"
		default:
			return string(data)
		}
	}
}

// DecodeResult reads an encoded Result.
func DecodeResult(s string) (Result, error) {
	var r Result
	if err := json.Unmarshal([]byte(s), &r); err != nil {
		return Result{}, fmt.Errorf("mover result %q: %w", s, err)
	}
	switch r.Phase {
	case ReasonCompleted, ReasonFailed, ReasonCanceled:
		return r, nil
	}
	return Result{}, fmt.Errorf("mover result %q: unknown phase %q", s, r.Phase)
}
