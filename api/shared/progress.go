package shared

// DataMoveOperationProgress is the progress of one data movement (a backup or a restore of one
// volume). The first three fields are Velero's; the rest are Ferry's own, optional, and ignored
// by readers that do not know them.
type DataMoveOperationProgress struct {
	// TotalBytes is the size of the data to move, in bytes.
	// +optional
	TotalBytes int64 `json:"totalBytes,omitempty"`

	// IncrementalBytes is the number of bytes that were not already in the repository and had to
	// be uploaded.
	// +optional
	IncrementalBytes int64 `json:"incrementalBytes,omitempty"`

	// BytesDone is the number of bytes processed so far.
	// +optional
	BytesDone int64 `json:"bytesDone,omitempty"`

	// TotalFiles is the number of files to move.
	// +optional
	TotalFiles int64 `json:"totalFiles,omitempty"`

	// FilesDone is the number of files processed so far.
	// +optional
	FilesDone int64 `json:"filesDone,omitempty"`

	// BytesPerSecond is the recent throughput, in bytes per second.
	// +optional
	BytesPerSecond int64 `json:"bytesPerSecond,omitempty"`

	// Stage is the step the work is at: for a backup Scanning (the source is walked to estimate
	// its size while hashing already runs; the totals are what was done so far), Uploading,
	// Flushing (the snapshot is saved and the last packs and indexes written), Finalizing, Done;
	// for a restore Restoring, Done.
	// +optional
	Stage ProgressStage `json:"stage,omitempty"`

	// Estimated is true while TotalBytes and TotalFiles are an estimate (the source's walk, or
	// the parent snapshot's size). An estimate never shrinks while the work runs and is raised
	// when what was done exceeds it (BytesDone <= TotalBytes always); at the end the totals are
	// what was done. Always written with the other figures, so that the end clears it.
	// +optional
	Estimated *bool `json:"estimated,omitempty"`

	// BytesHashed and FilesHashed count what a backup read and hashed; BytesCached and
	// FilesCached what it found unchanged since the parent snapshot and did not read. BytesDone
	// is their sum; IncrementalBytes is what was uploaded to the storage.
	// +optional
	BytesHashed int64 `json:"bytesHashed,omitempty"`
	// +optional
	FilesHashed int64 `json:"filesHashed,omitempty"`
	// +optional
	BytesCached int64 `json:"bytesCached,omitempty"`
	// +optional
	FilesCached int64 `json:"filesCached,omitempty"`
}

// ProgressStage is the step a data movement is at.
// +kubebuilder:validation:Enum=Scanning;Uploading;Flushing;Finalizing;Restoring;Done
type ProgressStage string

// Progress stages.
const (
	ProgressStageScanning   ProgressStage = "Scanning"
	ProgressStageUploading  ProgressStage = "Uploading"
	ProgressStageFlushing   ProgressStage = "Flushing"
	ProgressStageFinalizing ProgressStage = "Finalizing"
	ProgressStageRestoring  ProgressStage = "Restoring"
	ProgressStageDone       ProgressStage = "Done"
)
