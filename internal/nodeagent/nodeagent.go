// Package nodeagent provides ferry-node-agent: the per-node process that works on the pod volume
// and data mover operations targeted at its own node.
package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	velerov2alpha1 "github.com/ferry-backup/ferry/api/v2alpha1"
	"github.com/ferry-backup/ferry/internal/controller/datamovement"
	"github.com/ferry-backup/ferry/internal/controller/nodeagentconfig"
	"github.com/ferry-backup/ferry/internal/controller/podvolumebackup"
	"github.com/ferry-backup/ferry/internal/controller/podvolumerestore"
	"github.com/ferry-backup/ferry/internal/credentialfiles"
	"github.com/ferry-backup/ferry/internal/exposer"
	"github.com/ferry-backup/ferry/internal/manager"
	"github.com/ferry-backup/ferry/internal/nodeconfig"
	"github.com/ferry-backup/ferry/internal/operation"
	"github.com/ferry-backup/ferry/internal/podvolume"
	"github.com/ferry-backup/ferry/internal/repoaccess"
	"github.com/ferry-backup/ferry/internal/restic"
	"github.com/ferry-backup/ferry/internal/scheme"
	"github.com/ferry-backup/ferry/internal/slot"
)

// Identity is the client identity of every node-agent in snapshots: the same on all nodes, so
// a pod that moved to another node still finds its previous snapshot (sources are told apart
// by their path, /<namespace>/pvc/<claim> or /<namespace>/pod/<pod>/<volume>).
// Mover pods use it too, so the two paths of one claim continue each other's snapshots.
var Identity = repoaccess.AgentIdentity

// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch,namespace=velero

// DefaultHostPodsRoot is where the DaemonSet mounts the kubelet's pods directory.
const DefaultHostPodsRoot = "/host_pods"

// Options configure ferry-node-agent.
type Options struct {
	manager.Options
	// NodeName is this agent's node; defaults to $NODE_NAME (the downward API).
	NodeName string
	// HostPodsRoot is the kubelet pods directory as mounted in this process.
	HostPodsRoot string
	// WorkDir holds Kopia's connection files and caches.
	WorkDir string
	// Mover describes the data mover pods: the image with /ferry-datamover (default: $FERRY_IMAGE,
	// which `ferry install` sets to its own image), pull policy and ServiceAccount.
	Mover exposer.Mover
	// Restic runs the restic program for restores of Velero's restic backups: Binary is
	// --restic-binary (default: "restic" in PATH, else next to this program, as in Ferry's
	// image), Environ this process's environment.
	Restic restic.CLI
	// DataMovers are the spec.datamover values whose DataUploads and DataDownloads this agent
	// moves: ferry, and velero (which also stands for Velero's default, the empty value) in place
	// of Velero's node-agent.
	DataMovers []string
}

// NewOptions returns the defaults, taking the node name from $NODE_NAME.
func NewOptions() Options {
	return Options{
		Options:      manager.NewOptions(":8085", ":8081"),
		NodeName:     os.Getenv("NODE_NAME"),
		HostPodsRoot: DefaultHostPodsRoot,
		WorkDir:      filepath.Join(os.TempDir(), "ferry-node-agent"),
		Mover: exposer.Mover{Image: os.Getenv("FERRY_IMAGE"), ServiceAccount: "ferry-datamover",
			PullPolicy: corev1.PullPolicy(os.Getenv("FERRY_IMAGE_PULL_POLICY")),
			Resources:  exposer.DefaultMoverResources(), WorkDirSizeLimit: exposer.DefaultMoverWorkDirSizeLimit()},
		Restic:     restic.CLI{Environ: os.Environ()},
		DataMovers: []string{velerov2alpha1.DataMoverFerry},
	}
}

// AddFlags registers the node-agent's flags.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	o.Options.AddFlags(fs)
	fs.StringVar(&o.NodeName, "node-name", o.NodeName, "name of this node (default: $NODE_NAME)")
	fs.StringVar(&o.HostPodsRoot, "host-pods-root", o.HostPodsRoot, "the kubelet pods directory as mounted in this process")
	fs.StringVar(&o.WorkDir, "work-dir", o.WorkDir, "directory for repository connections and caches")
	fs.StringVar(&o.Mover.Image, "mover-image", o.Mover.Image, "image of the data mover pods (default: $FERRY_IMAGE)")
	fs.StringVar(&o.Mover.ServiceAccount, "mover-service-account", o.Mover.ServiceAccount, "ServiceAccount of the data mover pods")
	fs.StringVar(&o.Restic.Binary, "restic-binary", o.Restic.Binary,
		"the restic program, for restores of Velero's restic backups (default: restic in PATH, else next to this program)")
	fs.StringSliceVar(&o.DataMovers, "data-movers", o.DataMovers,
		"spec.datamover values of the DataUploads and DataDownloads this agent moves: ferry, velero (also Velero's default, empty);\n"+
			"ferry install --in-place-of-velero sets ferry,velero")
}

// Validate reports the invalid settings, naming their flags.
func (o *Options) Validate() error {
	var errs []error
	if o.NodeName == "" {
		errs = append(errs, errors.New("--node-name (or $NODE_NAME) is required"))
	}
	for _, m := range o.DataMovers {
		if m != velerov2alpha1.DataMoverFerry && m != velerov2alpha1.DataMoverVelero {
			errs = append(errs, fmt.Errorf("--data-movers: %q is not %s or %s", m, velerov2alpha1.DataMoverFerry, velerov2alpha1.DataMoverVelero))
		}
	}
	if !filepath.IsAbs(o.HostPodsRoot) {
		errs = append(errs, fmt.Errorf("--host-pods-root %q must be an absolute directory", o.HostPodsRoot))
	}
	if !filepath.IsAbs(o.WorkDir) {
		errs = append(errs, fmt.Errorf("--work-dir %q must be an absolute directory", o.WorkDir))
	}
	errs = append(errs, o.Options.Validate())
	return errors.Join(errs...)
}

// CacheOptions restrict the agent's watches to its own node and namespace: the PodVolumeBackups
// whose spec.node names it (when the API server can select by it, bySpecNode; else all of the
// namespace, filtered by the controller), the PodVolumeRestores (Velero leaves their spec.node
// empty, so the target pod's node decides), the DataUploads and DataDownloads, the mover pods
// and their Events, the pods of other namespaces scheduled on this node (the targets of
// restores), and the node-agent ConfigMap. Other pods, claims, volumes, snapshots, locations and
// Secrets are read directly when an operation needs them, so no node-agent watches every pod
// and volume of the cluster.
func CacheOptions(nodeName, namespace string, bySpecNode bool) cache.Options {
	inNamespace := map[string]cache.Config{namespace: {}}
	movers := labels.SelectorFromSet(nil)
	if req, err := labels.NewRequirement(exposer.LabelOperation, selection.Exists, nil); err == nil {
		movers = movers.Add(*req)
	}
	backups := cache.ByObject{Namespaces: inNamespace}
	if bySpecNode {
		backups.Field = fields.OneTermEqualSelector(nodeField, nodeName)
	}
	return cache.Options{ByObject: map[client.Object]cache.ByObject{
		&velerov1.PodVolumeBackup{}:    backups,
		&velerov1.PodVolumeRestore{}:   {Namespaces: inNamespace},
		&velerov2alpha1.DataUpload{}:   {Namespaces: inNamespace},
		&velerov2alpha1.DataDownload{}: {Namespaces: inNamespace},
		&corev1.Pod{}: {Namespaces: map[string]cache.Config{
			namespace:           {LabelSelector: movers},
			cache.AllNamespaces: {FieldSelector: fields.OneTermEqualSelector("spec.nodeName", nodeName)},
		}},
		&corev1.Event{}:     {Namespaces: inNamespace, Label: movers},
		&corev1.ConfigMap{}: {Namespaces: inNamespace},
	}}
}

// Run serves until ctx ends, then waits for running operations to stop (they stay InProgress
// and resume from their checkpoints when the agent starts again).
func Run(ctx context.Context, o Options) error {
	cfg, err := o.RESTConfig()
	if err != nil {
		return err
	}
	probe, err := client.New(cfg, client.Options{Scheme: scheme.New()})
	if err != nil {
		return err
	}
	bySpecNode, notSelectable := NodeFieldSelectable(ctx, probe, o.Namespace, o.NodeName)
	mgr, err := manager.New(o.Options, manager.Extra{Cache: CacheOptions(o.NodeName, o.Namespace, bySpecNode)})
	if err != nil {
		return err
	}
	if notSelectable != nil {
		mgr.GetLogger().Info("watching every PodVolumeBackup of the namespace and keeping this node's",
			"node", o.NodeName, "reason", notSelectable.Error())
	}
	recorder := mgr.GetEventRecorderFor("ferry-node-agent")
	slots := slot.New(nodeconfig.Default().ConcurrentRepoOperations)
	config := &nodeagentconfig.Reconciler{
		Client: mgr.GetClient(), Recorder: recorder, Namespace: o.Namespace,
		Apply: func(c nodeconfig.Config) { slots.Resize(c.ConcurrentRepoOperations) },
	}
	access := repoaccess.New(repoaccess.Options{
		Client: mgr.GetAPIReader(), Namespace: o.Namespace, WorkDir: o.WorkDir, Identity: Identity, CredentialsFile: o.CredentialsFile,
		LockCheckTimeout: func() time.Duration { return config.Current().BackupRepositoryLockCheckTimeout },
	})
	defer access.Close(context.WithoutCancel(ctx))
	runner := operation.NewRunner(ctx, slots)
	defer runner.Wait()
	locator := podvolume.Locator{Client: mgr.GetAPIReader(), Node: o.NodeName, Root: o.HostPodsRoot}
	backups := &podvolumebackup.Reconciler{
		Client: mgr.GetClient(), Recorder: recorder, Clock: clock.RealClock{}, Node: o.NodeName,
		Volumes: locator, Repositories: access, Runner: runner, Config: config.Current,
	}
	restores := &podvolumerestore.Reconciler{
		Client: mgr.GetClient(), Recorder: recorder, Clock: clock.RealClock{}, Node: o.NodeName,
		Volumes: locator, Repositories: access, Runner: runner, Config: config.Current, Restic: o.Restic,
	}
	// The exposer reads snapshots, claims and volumes of any namespace one at a time: uncached.
	direct, err := client.New(mgr.GetConfig(), client.Options{Scheme: mgr.GetScheme()})
	if err != nil {
		return err
	}
	mover := o.Mover
	mover.Credentials = ownCredentialFiles(ctx, direct, o.Namespace, mgr.GetLogger())
	exp := &exposer.Exposer{Client: direct, Namespace: o.Namespace, Mover: mover}
	uploads := &datamovement.Reconciler{Client: mgr.GetClient(), Recorder: recorder, Clock: clock.RealClock{}, Node: o.NodeName,
		Upload: true, Exposer: exp, Runner: runner, Config: config.Current, DataMovers: o.DataMovers}
	downloads := &datamovement.Reconciler{Client: mgr.GetClient(), Recorder: recorder, Clock: clock.RealClock{}, Node: o.NodeName,
		Exposer: exp, Runner: runner, Config: config.Current, DataMovers: o.DataMovers}
	for name, c := range map[string]interface{ SetupWithManager(ctrl.Manager) error }{
		"node-agent config": config, "PodVolumeBackup": backups, "PodVolumeRestore": restores,
		"DataUpload": uploads, "DataDownload": downloads,
	} {
		if err := c.SetupWithManager(mgr); err != nil {
			return fmt.Errorf("set up the %s controller: %w", name, err)
		}
	}
	return mgr.Start(ctx)
}

// ownCredentialFiles returns the credential files of this agent's own pod ($POD_NAME in the
// install namespace), which its data mover pods get too: Velero's cloud-credentials where Ferry's
// agent runs in place of Velero's. None when the pod cannot be read (the agent runs outside a
// pod, or an older DaemonSet does not set POD_NAME).
func ownCredentialFiles(ctx context.Context, c client.Reader, namespace string, logger logr.Logger) credentialfiles.Files {
	name := os.Getenv("POD_NAME")
	if name == "" {
		return credentialfiles.Files{}
	}
	pod := &corev1.Pod{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, pod); err != nil {
		logger.Info("own pod not readable: mover pods get no credential files from it", "pod", name, "error", err.Error())
		return credentialfiles.Files{}
	}
	files := credentialfiles.Of(&pod.Spec, "")
	if len(files.Volumes)+len(files.Env) > 0 {
		logger.Info("mover pods get this agent's credential files", "volumes", len(files.Volumes), "variables", len(files.Env))
	}
	return files
}
