package v1

// PodVolumePhase is the lifecycle phase of a PodVolumeBackup or PodVolumeRestore:
// New → Accepted → (Prepared) → InProgress → Completed | Failed | Canceling → Canceled.
// +kubebuilder:validation:Enum=New;Accepted;Prepared;InProgress;Canceling;Canceled;Completed;Failed
type PodVolumePhase string

// Phases of pod volume operations. Velero uses the same values.
const (
	PodVolumePhaseNew        PodVolumePhase = "New"
	PodVolumePhaseAccepted   PodVolumePhase = "Accepted"
	PodVolumePhasePrepared   PodVolumePhase = "Prepared"
	PodVolumePhaseInProgress PodVolumePhase = "InProgress"
	PodVolumePhaseCanceling  PodVolumePhase = "Canceling"
	PodVolumePhaseCanceled   PodVolumePhase = "Canceled"
	PodVolumePhaseCompleted  PodVolumePhase = "Completed"
	PodVolumePhaseFailed     PodVolumePhase = "Failed"
)

// Terminal reports whether no further work happens in this phase.
func (p PodVolumePhase) Terminal() bool {
	return p == PodVolumePhaseCompleted || p == PodVolumePhaseFailed || p == PodVolumePhaseCanceled
}
