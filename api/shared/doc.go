// Package shared provides the API types used by more than one version of the velero.io group,
// such as the progress of a data movement.
//
// +kubebuilder:object:generate=true
package shared
