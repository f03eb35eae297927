package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	// VerificationErrors is the number of damaged entries the last verification of a backup of
	// the location found.
	VerificationErrors = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "ferry_backup_verification_errors",
		Help: "Damaged entries found by the last verification of a backup of the storage location.",
	}, []string{"location"})
	// VerificationTime is when the last verification of a backup of the location ended.
	VerificationTime = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "ferry_backup_verification_last_timestamp_seconds",
		Help: "When the last verification of a backup of the storage location ended (Unix time).",
	}, []string{"location"})
	// Verifications counts verifications that ended, by location and outcome: Verified (no
	// damage), Damaged, or Incomplete (not every volume could be verified).
	Verifications = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ferry_backup_verifications_total",
		Help: "Backup verifications that ended, by storage location and outcome (Verified, Damaged, Incomplete).",
	}, []string{"location", "outcome"})
)

func init() {
	ctrlmetrics.Registry.MustRegister(VerificationErrors, VerificationTime, Verifications)
}
