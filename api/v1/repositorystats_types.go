package v1

import (
	"encoding/json"
	"time"
)

// AnnotationRepositoryStats on a BackupRepository holds what ferry-server measured of the
// repository after its last maintenance run and when maintenance last succeeded: a
// RepositoryStats as JSON. Velero's status has no place for them.
const AnnotationRepositoryStats = "ferry.io/repository-stats"

// RepositoryStats describe a repository's size and health, as measured by a maintenance Job.
//
// +kubebuilder:object:generate=false
type RepositoryStats struct {
	// Measured is when the stats were taken (the end of a maintenance run); zero when no run
	// measured them yet.
	Measured time.Time `json:"measured,omitzero"`
	// SizeBytes is the size of all the repository's blobs.
	SizeBytes int64 `json:"sizeBytes"`
	// Blobs and BlobBytes count the blobs and their bytes by kind: pack (data packs), metadata
	// (metadata packs), index, other.
	Blobs     map[string]int64 `json:"blobs,omitempty"`
	BlobBytes map[string]int64 `json:"blobBytes,omitempty"`
	// Snapshots counts the snapshots; LogicalBytes sums the sizes of the files of every
	// snapshot, as if each were stored in full.
	Snapshots    int64 `json:"snapshots"`
	LogicalBytes int64 `json:"logicalBytes"`
	// LiveBytes is the packed size of the contents the index lists as live.
	LiveBytes int64 `json:"liveBytes"`
	// DedupRatio is LogicalBytes / LiveBytes: deduplication and compression together.
	DedupRatio float64 `json:"dedupRatio"`
	// ReclaimableBytes is the dead space in packs (pack bytes less LiveBytes): data no snapshot
	// references, which later full maintenance runs free as they delete or rewrite its packs.
	ReclaimableBytes int64 `json:"reclaimableBytes"`
	// DeletedBytes is the part of it full maintenance marked deleted and has not yet dropped
	// from the index.
	DeletedBytes int64 `json:"deletedBytes"`
	// LastQuick and LastFull are the ends of the last successful quick and full maintenance;
	// LastFullFreedBytes is what that full run freed (storage before less after).
	LastQuick          *time.Time `json:"lastQuick,omitempty"`
	LastFull           *time.Time `json:"lastFull,omitempty"`
	LastFullFreedBytes int64      `json:"lastFullFreedBytes,omitempty"`
}

// RepositoryStats reads AnnotationRepositoryStats; false when there is none or it cannot be read
// (it is written again after the next successful maintenance).
func (r *BackupRepository) RepositoryStats() (RepositoryStats, bool) {
	var s RepositoryStats
	data, ok := r.Annotations[AnnotationRepositoryStats]
	if !ok || json.Unmarshal([]byte(data), &s) != nil {
		return RepositoryStats{}, false
	}
	return s, true
}

// MaintenanceLag is how far maintenance is behind its schedule at now: now less when the next
// run was due (the last successful maintenance, or the repository's creation when none
// succeeded, plus every); zero when it is not overdue. Retries after failures do not count as
// keeping the schedule: a repository whose maintenance keeps failing falls further behind.
func (r *BackupRepository) MaintenanceLag(every time.Duration, now time.Time) time.Duration {
	since := r.CreationTimestamp.Time
	if last := r.Status.LastMaintenanceTime; last != nil {
		since = last.Time
	}
	if since.IsZero() {
		return 0
	}
	return max(0, now.Sub(since.Add(every)))
}
