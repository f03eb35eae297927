// Package metrics provides Ferry's Prometheus metrics, registered with controller-runtime's
// registry and served on the process's metrics endpoint.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Label values of "kind".
const (
	KindBackup   = "PodVolumeBackup"
	KindRestore  = "PodVolumeRestore"
	KindUpload   = "DataUpload"
	KindDownload = "DataDownload"
)

var (
	// Operations counts finished volume operations by kind and outcome (Completed, Failed, Canceled).
	Operations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ferry_volume_operations_total",
		Help: "Volume backups and restores that ended, by kind and outcome.",
	}, []string{"kind", "outcome"})
	// Bytes counts bytes processed (read for backups, written for restores).
	Bytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ferry_volume_bytes_total",
		Help: "Bytes processed by volume operations, by kind.",
	}, []string{"kind"})
	// Files counts files processed.
	Files = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ferry_volume_files_total",
		Help: "Files processed by volume operations, by kind.",
	}, []string{"kind"})
	// Duration observes how long operations took, from start of data movement to the end.
	Duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "ferry_volume_operation_duration_seconds",
		Help:    "Duration of volume operations, by kind and outcome.",
		Buckets: prometheus.ExponentialBuckets(1, 2, 16),
	}, []string{"kind", "outcome"})
	// Waiting is the number of operations waiting for a slot (concurrentRepoOperations).
	Waiting = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "ferry_volume_operations_waiting",
		Help: "Volume operations waiting for one of the node's concurrentRepoOperations slots.",
	})
	// Running is the number of operations holding a slot.
	Running = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "ferry_volume_operations_running",
		Help: "Volume operations holding one of the node's slots.",
	})
)

func init() {
	ctrlmetrics.Registry.MustRegister(Operations, Bytes, Files, Duration, Waiting, Running)
}
