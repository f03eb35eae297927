package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ScheduleSpec says which backup to take and when.
type ScheduleSpec struct {
	// Template is the spec of every Backup the schedule creates (its metadata.labels go on the
	// Backup as labels).
	Template BackupSpec `json:"template"`

	// Schedule is a cron expression in UTC: five fields (minute, hour, day of month, month,
	// day of week), a descriptor such as @daily, or @every <duration>; CRON_TZ=<zone> in front
	// picks another time zone.
	// +kubebuilder:validation:MinLength=1
	Schedule string `json:"schedule"`

	// UseOwnerReferencesInBackup makes the schedule the owner of its Backups, so that deleting
	// the schedule deletes the Backup objects (never their data).
	// +optional
	// +nullable
	UseOwnerReferencesInBackup *bool `json:"useOwnerReferencesInBackup,omitempty"`

	// Paused stops the schedule from creating Backups.
	// +optional
	Paused bool `json:"paused,omitempty"`

	// SkipImmediately skips the run that is due when the schedule is created or unpaused; the
	// next run is at the next cron time. The server sets it back to false once used.
	// +optional
	SkipImmediately *bool `json:"skipImmediately,omitempty"`
}

// SchedulePhase is where a schedule stands.
// +kubebuilder:validation:Enum=New;Enabled;FailedValidation
type SchedulePhase string

// Phases of a Schedule (Velero's values).
const (
	SchedulePhaseNew              SchedulePhase = "New"
	SchedulePhaseEnabled          SchedulePhase = "Enabled"
	SchedulePhaseFailedValidation SchedulePhase = "FailedValidation"
)

// ScheduleStatus is what the server observed of a schedule.
type ScheduleStatus struct {
	// Phase is New, Enabled (valid; creating Backups unless paused) or FailedValidation.
	// +optional
	Phase SchedulePhase `json:"phase,omitempty"`

	// LastBackup is when the schedule last created a Backup.
	// +optional
	// +nullable
	LastBackup *metav1.Time `json:"lastBackup,omitempty"`

	// LastSkipped is when the schedule last skipped a run (skipImmediately, or a Backup of the
	// schedule still running).
	// +optional
	// +nullable
	LastSkipped *metav1.Time `json:"lastSkipped,omitempty"`

	// ValidationErrors name the fields that keep the schedule from running.
	// +optional
	ValidationErrors []string `json:"validationErrors,omitempty"`
}

// Schedule creates Backups from a template at the times of a cron expression.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Status",type="string",JSONPath=".status.phase",description="Status of the schedule"
// +kubebuilder:printcolumn:name="Schedule",type="string",JSONPath=".spec.schedule",description="A cron expression defining when to run the Backup"
// +kubebuilder:printcolumn:name="LastBackup",type="date",JSONPath=".status.lastBackup",description="The last time a Backup was run for this schedule"
// +kubebuilder:printcolumn:name="Age",type="date",JSONPath=".metadata.creationTimestamp"
// +kubebuilder:printcolumn:name="Paused",type="boolean",JSONPath=".spec.paused"
type Schedule struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// +optional
	Spec ScheduleSpec `json:"spec,omitempty"`
	// +optional
	Status ScheduleStatus `json:"status,omitempty"`
}

// ScheduleList is a list of Schedules.
//
// +kubebuilder:object:root=true
type ScheduleList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Schedule `json:"items"`
}

// LabelScheduleName labels the Backups of a schedule with its name (Velero's label).
const LabelScheduleName = "velero.io/schedule-name"
