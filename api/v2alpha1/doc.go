// Package v2alpha1 provides the velero.io/v2alpha1 API types of the CSI data mover: DataUpload
// and DataDownload. The JSON field names and meanings are those of Velero's CRDs, so a Velero
// server can hand its data movement to Ferry (spec.datamover: ferry).
//
// +kubebuilder:object:generate=true
// +groupName=velero.io
package v2alpha1
