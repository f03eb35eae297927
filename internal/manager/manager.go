// Package manager provides what ferry-server and ferry-node-agent share when they start: the
// connection to the API server, Ferry's scheme, the logger, and the metrics and health endpoints
// of a controller-runtime manager.
package manager

import (
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/ferry-backup/ferry/internal/logging"
	"github.com/ferry-backup/ferry/internal/memlimit"
	"github.com/ferry-backup/ferry/internal/scheme"
)

// DefaultNamespace is where Ferry is installed unless told otherwise (Velero's default).
const DefaultNamespace = "velero"

// Options are the settings every Ferry control-plane process has.
type Options struct {
	// Kubeconfig is a kubeconfig file; empty means $KUBECONFIG, in-cluster, then ~/.kube/config.
	Kubeconfig string
	// Namespace is the install namespace (BackupStorageLocations, Secrets, the ConfigMap).
	Namespace string
	// MetricsAddr serves Prometheus metrics; "0" disables it.
	MetricsAddr string
	// HealthAddr serves /healthz and /readyz; "0" disables it.
	HealthAddr string
	Logging    logging.Options
	// CredentialsFile is the AWS shared credentials file for S3 locations without
	// spec.credential ($AWS_SHARED_CREDENTIALS_FILE, as `velero install` sets it).
	CredentialsFile string
}

// NewOptions returns the defaults.
func NewOptions(metricsAddr, healthAddr string) Options {
	return Options{
		Namespace:   DefaultNamespace,
		MetricsAddr: metricsAddr,
		HealthAddr:  healthAddr,
		Logging:     logging.NewOptions(),
		// The environment variable Velero's AWS plugin reads; no flag, so that swapping Velero's
		// node-agent for Ferry's keeps its pod spec.
		CredentialsFile: os.Getenv("AWS_SHARED_CREDENTIALS_FILE"),
	}
}

// AddFlags registers the shared flags.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "kubeconfig file (default: $KUBECONFIG, in-cluster, ~/.kube/config)")
	fs.StringVar(&o.Namespace, "namespace", o.Namespace, "namespace Ferry is installed in")
	fs.StringVar(&o.MetricsAddr, "metrics-bind-address", o.MetricsAddr, `address of the Prometheus metrics endpoint ("0" disables it)`)
	fs.StringVar(&o.HealthAddr, "health-probe-bind-address", o.HealthAddr, `address of the /healthz and /readyz endpoints ("0" disables it)`)
	o.Logging.AddFlags(fs)
}

// Validate reports the first invalid setting, naming its flag.
func (o *Options) Validate() error {
	var errs []error
	if o.Namespace == "" {
		errs = append(errs, errors.New("--namespace must not be empty"))
	}
	for flag, addr := range map[string]string{"--metrics-bind-address": o.MetricsAddr, "--health-probe-bind-address": o.HealthAddr} {
		if addr == "0" {
			continue
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", flag, err))
		}
	}
	if err := o.Logging.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// RESTConfig loads the API server connection.
func (o *Options) RESTConfig() (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = o.Kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig: %w", err)
	}
	return cfg, nil
}

// Extra are the per-program manager settings.
type Extra struct {
	// LeaderElectionID enables leader election under this Lease name when not empty.
	LeaderElectionID string
	// Cache restricts what the manager's cache watches.
	Cache cache.Options
}

// New builds a manager with Ferry's scheme, logger and endpoints.
func New(o Options, extra Extra) (ctrl.Manager, error) {
	log := logging.New(o.Logging)
	ctrl.SetLogger(log)
	if limit := memlimit.Apply("/"); limit > 0 {
		log.Info("Go's soft memory limit follows the container's", "bytes", limit, "fraction", memlimit.Fraction)
	}
	cfg, err := o.RESTConfig()
	if err != nil {
		return nil, err
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  scheme.New(),
		Logger:                  log,
		Metrics:                 metricsserver.Options{BindAddress: o.MetricsAddr},
		HealthProbeBindAddress:  o.HealthAddr,
		LeaderElection:          extra.LeaderElectionID != "",
		LeaderElectionID:        extra.LeaderElectionID,
		LeaderElectionNamespace: o.Namespace,
		// Once the manager stops, the programs only close their repositories and exit, so the
		// lease can be handed back at once: a restarted or rolled server takes over in about a
		// second instead of a lease period (16 s seen on the real cluster).
		LeaderElectionReleaseOnCancel: true,
		Cache:                         extra.Cache,
	})
	if err != nil {
		return nil, fmt.Errorf("create manager: %w", err)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return nil, fmt.Errorf("add health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
		return nil, fmt.Errorf("add ready check: %w", err)
	}
	return mgr, nil
}
