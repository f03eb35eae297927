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
}
