package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Repository health, per BackupRepository: labels location (the storage location) and
// repository (the BackupRepository's name). The sizes are those the last maintenance Job
// measured (docs/server.md).
var (
	// RepositorySize is the size of all the repository's blobs.
	RepositorySize = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "ferry_repository_size_bytes",
		Help: "Size of all blobs of the repository, as measured after its last maintenance.",
	}, []string{"location", "repository"})
	// RepositoryBlobs counts the blobs by kind: pack, metadata, index, other.
	RepositoryBlobs = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "ferry_repository_blobs",
		Help: "Blobs of the repository by kind (pack, metadata, index, other), as measured after its last maintenance.",
	}, []string{"location", "repository", "kind"})
	// RepositorySnapshots counts the snapshots.
	RepositorySnapshots = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "ferry_repository_snapshots",
		Help: "Snapshots in the repository, as counted after its last maintenance.",
	}, []string{"location", "repository"})
	// RepositoryDedupRatio is the logical size of all snapshots over the live stored bytes.
	RepositoryDedupRatio = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "ferry_repository_dedup_ratio",
		Help: "Sum of the sizes of all snapshots over the packed bytes of the live contents (deduplication and compression).",
	}, []string{"location", "repository"})
	// RepositoryReclaimable is the dead space in packs, which later full maintenance frees.
	RepositoryReclaimable = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "ferry_repository_reclaimable_bytes",
		Help: "Bytes in packs that no live content uses, which later full maintenance runs free.",
	}, []string{"location", "repository"})
	// RepositoryLastMaintenance is when maintenance of each mode (quick, full) last succeeded.
	RepositoryLastMaintenance = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "ferry_repository_last_maintenance_timestamp_seconds",
		Help: "When quick or full maintenance of the repository last succeeded (Unix time).",
	}, []string{"location", "repository", "mode"})
	// RepositoryMaintenanceLag is how far maintenance is behind its schedule.
	RepositoryMaintenanceLag = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "ferry_repository_maintenance_lag_seconds",
		Help: "How long ago maintenance of the repository was due to have succeeded; 0 when it is on schedule.",
	}, []string{"location", "repository"})
)

func init() {
	ctrlmetrics.Registry.MustRegister(RepositorySize, RepositoryBlobs, RepositorySnapshots, RepositoryDedupRatio,
		RepositoryReclaimable, RepositoryLastMaintenance, RepositoryMaintenanceLag)
}
