// Package server provides ferry-server: the control side that validates storage locations,
// keeps backup repositories, and turns Backups and Restores into node-agent work.
package server

import (
	"context"

	"github.com/spf13/pflag"

	"github.com/ferry-backup/ferry/internal/manager"
)

// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch;create;update;patch;delete,namespace=velero
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Options configure ferry-server.
type Options struct {
	manager.Options
	// LeaderElect runs one active server among replicas.
	LeaderElect bool
}

// NewOptions returns the defaults.
func NewOptions() Options {
	return Options{Options: manager.NewOptions(":8085", ":8081"), LeaderElect: true}
}

// AddFlags registers the server's flags.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	o.Options.AddFlags(fs)
	fs.BoolVar(&o.LeaderElect, "leader-elect", o.LeaderElect, "elect one active server among replicas through a Lease")
}

// Run serves until ctx ends.
func Run(ctx context.Context, o Options) error {
	extra := manager.Extra{}
	if o.LeaderElect {
		extra.LeaderElectionID = "ferry-server.velero.io"
	}
	mgr, err := manager.New(o.Options, extra)
	if err != nil {
		return err
	}
	return mgr.Start(ctx)
}
