package backuprepository

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/metrics"
	"github.com/ferry-backup/ferry/internal/repository"
)

// annotate remembers a successful run in the annotations: when each mode last succeeded
// (AnnotationLastFull, which the schedule reads, and the stats' lastQuick and lastFull) and
// what the run measured. A failed run changes nothing: the stats stay those of the last
// success.
func (r *Reconciler) annotate(ctx context.Context, br *velerov1.BackupRepository, res JobResult) error {
	if !res.Succeeded {
		return nil
	}
	stats, _ := br.RepositoryStats()
	end := res.End.UTC().Truncate(time.Second)
	full := res.Mode == string(repository.MaintenanceFull)
	if full {
		stats.LastFull, stats.LastFullFreedBytes = &end, res.Freed
	} else {
		stats.LastQuick = &end
	}
	if s := res.Stats; s != nil {
		stats.Measured, stats.SizeBytes, stats.Blobs, stats.BlobBytes = end, s.SizeBytes, s.Blobs, s.BlobBytes
		stats.Snapshots, stats.LogicalBytes, stats.LiveBytes = s.Snapshots, s.LogicalBytes, s.LiveBytes
		stats.DedupRatio, stats.ReclaimableBytes, stats.DeletedBytes = s.DedupRatio(), s.ReclaimableBytes(), s.DeletedBytes
	}
	data, err := json.Marshal(stats)
	if err != nil {
		return fmt.Errorf("encode the stats of %s: %w", br.Name, err)
	}
	patch := client.MergeFrom(br.DeepCopy())
	if br.Annotations == nil {
		br.Annotations = map[string]string{}
	}
	br.Annotations[velerov1.AnnotationRepositoryStats] = string(data)
	if full {
		br.Annotations[AnnotationLastFull] = end.Format(time.RFC3339)
	}
	return r.Client.Patch(ctx, br, patch)
}

// observe sets the repository's metrics from its annotation and status: at every reconcile, so
// that they come back after a restart and the lag keeps growing while maintenance is late.
func observe(br *velerov1.BackupRepository, every time.Duration, now time.Time) {
	loc, name := br.Spec.BackupStorageLocation, br.Name
	metrics.RepositoryMaintenanceLag.WithLabelValues(loc, name).Set(br.MaintenanceLag(every, now).Seconds())
	stats, ok := br.RepositoryStats()
	if !ok {
		return
	}
	for mode, at := range map[string]*time.Time{string(repository.MaintenanceQuick): stats.LastQuick, string(repository.MaintenanceFull): stats.LastFull} {
		if at != nil {
			metrics.RepositoryLastMaintenance.WithLabelValues(loc, name, mode).Set(float64(at.Unix()))
		}
	}
	if stats.Measured.IsZero() {
		return
	}
	metrics.RepositorySize.WithLabelValues(loc, name).Set(float64(stats.SizeBytes))
	for _, kind := range []string{repository.BlobPack, repository.BlobMetadataPack, repository.BlobIndex, repository.BlobOther} {
		metrics.RepositoryBlobs.WithLabelValues(loc, name, kind).Set(float64(stats.Blobs[kind]))
	}
	metrics.RepositorySnapshots.WithLabelValues(loc, name).Set(float64(stats.Snapshots))
	metrics.RepositoryDedupRatio.WithLabelValues(loc, name).Set(stats.DedupRatio)
	metrics.RepositoryReclaimable.WithLabelValues(loc, name).Set(float64(stats.ReclaimableBytes))
}

// forget drops the metrics of a repository that is gone.
func forget(name string) {
	only := prometheus.Labels{"repository": name}
	for _, v := range []*prometheus.GaugeVec{metrics.RepositorySize, metrics.RepositoryBlobs, metrics.RepositorySnapshots,
		metrics.RepositoryDedupRatio, metrics.RepositoryReclaimable, metrics.RepositoryLastMaintenance, metrics.RepositoryMaintenanceLag} {
		v.DeletePartialMatch(only)
	}
}
