package v2alpha1

// Data mover names in spec.datamover. Velero's own node-agent handles "" and "velero" and
// ignores the rest; Ferry's node-agent handles "ferry" (and, when configured, the built-in ones).
const (
	DataMoverFerry  = "ferry"
	DataMoverVelero = "velero"
)

// DataMovePhase is the lifecycle phase of a DataUpload or DataDownload:
// New → Accepted → Prepared → InProgress → Completed | Failed | Canceling → Canceled.
// +kubebuilder:validation:Enum=New;Accepted;Prepared;InProgress;Canceling;Canceled;Completed;Failed
type DataMovePhase string

// Phases of data movements (Velero's values).
const (
	DataMovePhaseNew        DataMovePhase = "New"
	DataMovePhaseAccepted   DataMovePhase = "Accepted"
	DataMovePhasePrepared   DataMovePhase = "Prepared"
	DataMovePhaseInProgress DataMovePhase = "InProgress"
	DataMovePhaseCanceling  DataMovePhase = "Canceling"
	DataMovePhaseCanceled   DataMovePhase = "Canceled"
	DataMovePhaseCompleted  DataMovePhase = "Completed"
	DataMovePhaseFailed     DataMovePhase = "Failed"
)

// Terminal reports whether no further work happens in this phase.
func (p DataMovePhase) Terminal() bool {
	return p == DataMovePhaseCompleted || p == DataMovePhaseFailed || p == DataMovePhaseCanceled
}

// NodeOS is the operating system of the node that moves the data.
// +kubebuilder:validation:Enum=auto;linux;windows
type NodeOS string

// Node operating systems.
const (
	NodeOSLinux   NodeOS = "linux"
	NodeOSWindows NodeOS = "windows"
	NodeOSAuto    NodeOS = "auto"
)
