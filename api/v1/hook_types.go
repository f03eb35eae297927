package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/ferry-backup/ferry/api/shared"
)

// Hooks are part of the API so that Velero's Backups and Restores round-trip through Ferry's
// CRDs without loss. Ferry itself does not run them yet.

// BackupHooks are commands run around the backup of selected resources.
type BackupHooks struct {
	// +optional
	// +nullable
	Resources []BackupResourceHookSpec `json:"resources,omitempty"`
}

// HookSelector chooses the resources a hook applies to.
type HookSelector struct {
	// +optional
	// +nullable
	IncludedNamespaces []string `json:"includedNamespaces,omitempty"`
	// +optional
	// +nullable
	ExcludedNamespaces []string `json:"excludedNamespaces,omitempty"`
	// +optional
	// +nullable
	IncludedResources []string `json:"includedResources,omitempty"`
	// +optional
	// +nullable
	ExcludedResources []string `json:"excludedResources,omitempty"`
	// +optional
	// +nullable
	LabelSelector *metav1.LabelSelector `json:"labelSelector,omitempty"`
}

// BackupResourceHookSpec names hooks run before and after backing up the selected resources.
type BackupResourceHookSpec struct {
	Name         string `json:"name"`
	HookSelector `json:",inline"`
	// +optional
	PreHooks []BackupResourceHook `json:"pre,omitempty"`
	// +optional
	PostHooks []BackupResourceHook `json:"post,omitempty"`
}

// BackupResourceHook is one backup hook.
type BackupResourceHook struct {
	Exec *ExecHook `json:"exec"`
}

// ExecHook runs a command in a container of the pod.
type ExecHook struct {
	// +optional
	Container string `json:"container,omitempty"`
	// +kubebuilder:validation:MinItems=1
	Command []string `json:"command"`
	// +optional
	OnError HookErrorMode `json:"onError,omitempty"`
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$`
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('876000h')",message="must be a duration of at most 876000h (100 years)"
	Timeout shared.Duration `json:"timeout,omitempty"`
}

// HookErrorMode says whether a failing hook fails the operation.
// +kubebuilder:validation:Enum=Continue;Fail
type HookErrorMode string

// RestoreHooks are actions run while or after restoring selected resources.
type RestoreHooks struct {
	// +optional
	Resources []RestoreResourceHookSpec `json:"resources,omitempty"`
}

// RestoreResourceHookSpec names hooks run for the selected restored resources.
type RestoreResourceHookSpec struct {
	Name         string `json:"name"`
	HookSelector `json:",inline"`
	// +optional
	PostHooks []RestoreResourceHook `json:"postHooks,omitempty"`
}

// RestoreResourceHook is one restore hook: a command, or init containers added to the pod.
type RestoreResourceHook struct {
	// +optional
	Exec *ExecRestoreHook `json:"exec,omitempty"`
	// +optional
	Init *InitRestoreHook `json:"init,omitempty"`
}

// ExecRestoreHook runs a command in a restored pod's container.
type ExecRestoreHook struct {
	// +optional
	Container string `json:"container,omitempty"`
	// +kubebuilder:validation:MinItems=1
	Command []string `json:"command"`
	// +optional
	OnError HookErrorMode `json:"onError,omitempty"`
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$`
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('876000h')",message="must be a duration of at most 876000h (100 years)"
	ExecTimeout shared.Duration `json:"execTimeout,omitempty"`
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$`
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('876000h')",message="must be a duration of at most 876000h (100 years)"
	WaitTimeout shared.Duration `json:"waitTimeout,omitempty"`
	// +optional
	// +nullable
	WaitForReady *bool `json:"waitForReady,omitempty"`
}

// InitRestoreHook adds init containers to a restored pod.
type InitRestoreHook struct {
	// InitContainers are container specs, kept as written.
	// +optional
	// +kubebuilder:pruning:PreserveUnknownFields
	InitContainers []runtime.RawExtension `json:"initContainers"`
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$`
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('876000h')",message="must be a duration of at most 876000h (100 years)"
	Timeout shared.Duration `json:"timeout,omitempty"`
}

// HookStatus counts the hooks run for a backup or restore.
type HookStatus struct {
	// +optional
	HooksAttempted int `json:"hooksAttempted,omitempty"`
	// +optional
	HooksFailed int `json:"hooksFailed,omitempty"`
}
