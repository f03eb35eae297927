package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/ferry-backup/ferry/api/shared"
)

// The progress of each running volume operation, by kind, namespace and name: the figures of
// its status' progress. Each operation's series go when it ends (ForgetProgress), so their
// number is bounded by the operations running on the node.
var (
	progressLabels = []string{"kind", "namespace", "name"}
	progressBytes  = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "ferry_volume_progress_bytes",
		Help: "Bytes of a running volume operation, by figure: total (estimated, never shrinking while it runs), done, hashed (read and hashed), cached (unchanged since the parent snapshot, not read), uploaded.",
	}, append(progressLabels, "figure"))
	progressFiles = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "ferry_volume_progress_files",
		Help: "Files of a running volume operation, by figure: total, done, hashed, cached.",
	}, append(progressLabels, "figure"))
	progressRate = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "ferry_volume_progress_bytes_per_second",
		Help: "Bytes done per second by a running volume operation, since it started.",
	}, progressLabels)
	progressEstimated = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "ferry_volume_progress_estimated",
		Help: "1 while the totals of a running volume operation are an estimate.",
	}, progressLabels)
	progressStage = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "ferry_volume_progress_stage",
		Help: "1 for the stage a running volume operation is at (Scanning, Uploading, Flushing, Finalizing, Restoring, Done), 0 for the others.",
	}, append(progressLabels, "stage"))
)

// stages are the values of the stage label.
var stages = []shared.ProgressStage{shared.ProgressStageScanning, shared.ProgressStageUploading, shared.ProgressStageFlushing,
	shared.ProgressStageFinalizing, shared.ProgressStageRestoring, shared.ProgressStageDone}

func init() {
	ctrlmetrics.Registry.MustRegister(progressBytes, progressFiles, progressRate, progressEstimated, progressStage)
}

// SetProgress sets the gauges of the running operation kind namespace/name.
func SetProgress(kind, namespace, name string, p shared.DataMoveOperationProgress) {
	for figure, v := range map[string]int64{"total": p.TotalBytes, "done": p.BytesDone, "hashed": p.BytesHashed,
		"cached": p.BytesCached, "uploaded": p.IncrementalBytes} {
		progressBytes.WithLabelValues(kind, namespace, name, figure).Set(float64(v))
	}
	for figure, v := range map[string]int64{"total": p.TotalFiles, "done": p.FilesDone, "hashed": p.FilesHashed, "cached": p.FilesCached} {
		progressFiles.WithLabelValues(kind, namespace, name, figure).Set(float64(v))
	}
	progressRate.WithLabelValues(kind, namespace, name).Set(float64(p.BytesPerSecond))
	estimated := 0.0
	if p.Estimated != nil && *p.Estimated {
		estimated = 1
	}
	progressEstimated.WithLabelValues(kind, namespace, name).Set(estimated)
	for _, s := range stages {
		v := 0.0
		if s == p.Stage {
			v = 1
		}
		progressStage.WithLabelValues(kind, namespace, name, string(s)).Set(v)
	}
}

// ForgetProgress removes the gauges of the operation kind namespace/name, which ended.
func ForgetProgress(kind, namespace, name string) {
	only := prometheus.Labels{"kind": kind, "namespace": namespace, "name": name}
	for _, v := range []*prometheus.GaugeVec{progressBytes, progressFiles, progressRate, progressEstimated, progressStage} {
		v.DeletePartialMatch(only)
	}
}
