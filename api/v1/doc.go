// Package v1 provides the velero.io/v1 API types Ferry serves: storage locations, backup
// repositories, backups, schedules, restores and the pod volume operations of the file-system
// path.
// The JSON field names and meanings are those of Velero's CRDs, so objects written by either
// project decode into the other's types.
//
// +kubebuilder:object:generate=true
// +groupName=velero.io
package v1
