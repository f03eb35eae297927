// Package nodeagent provides ferry-node-agent: the per-node process that works on the pod volume
// and data mover operations targeted at its own node.
package nodeagent

import (
	"context"
	"errors"
	"os"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/fields"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	corev1 "k8s.io/api/core/v1"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/manager"
)

// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// DefaultHostPodsRoot is where the DaemonSet mounts the kubelet's pods directory.
const DefaultHostPodsRoot = "/host_pods"

// Options configure ferry-node-agent.
type Options struct {
	manager.Options
	// NodeName is this agent's node; defaults to $NODE_NAME (the downward API).
	NodeName string
	// HostPodsRoot is the kubelet pods directory as mounted in this process.
	HostPodsRoot string
}

// NewOptions returns the defaults, taking the node name from $NODE_NAME.
func NewOptions() Options {
	return Options{
		Options:      manager.NewOptions(":8085", ":8081"),
		NodeName:     os.Getenv("NODE_NAME"),
		HostPodsRoot: DefaultHostPodsRoot,
	}
}

// AddFlags registers the node-agent's flags.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	o.Options.AddFlags(fs)
	fs.StringVar(&o.NodeName, "node-name", o.NodeName, "name of this node (default: $NODE_NAME)")
	fs.StringVar(&o.HostPodsRoot, "host-pods-root", o.HostPodsRoot, "the kubelet pods directory as mounted in this process")
}

// Validate reports the invalid settings, naming their flags.
func (o *Options) Validate() error {
	var errs []error
	if o.NodeName == "" {
		errs = append(errs, errors.New("--node-name (or $NODE_NAME) is required"))
	}
	if o.HostPodsRoot == "" {
		errs = append(errs, errors.New("--host-pods-root must not be empty"))
	}
	errs = append(errs, o.Options.Validate())
	return errors.Join(errs...)
}

// CacheOptions restrict the agent's watches to its own node: pods scheduled there and pod
// volume operations whose spec.node names it.
func CacheOptions(nodeName string) cache.Options {
	onNode := func(field string) cache.ByObject {
		return cache.ByObject{Field: fields.OneTermEqualSelector(field, nodeName)}
	}
	return cache.Options{ByObject: map[client.Object]cache.ByObject{
		&corev1.Pod{}:                onNode("spec.nodeName"),
		&velerov1.PodVolumeBackup{}:  onNode("spec.node"),
		&velerov1.PodVolumeRestore{}: onNode("spec.node"),
	}}
}

// Run serves until ctx ends.
func Run(ctx context.Context, o Options) error {
	mgr, err := manager.New(o.Options, manager.Extra{Cache: CacheOptions(o.NodeName)})
	if err != nil {
		return err
	}
	return mgr.Start(ctx)
}
