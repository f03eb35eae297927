// Package nodeagentconfig provides the controller that applies the node-agent ConfigMap while
// the node-agent runs: a valid change takes effect at once, an invalid one is reported (an
// Event on the ConfigMap naming the key, and a log line) and the previous values stay in force.
package nodeagentconfig

import (
	"context"
	"fmt"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/record"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/ferry-backup/ferry/internal/nodeconfig"
)

// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch,namespace=velero
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch,namespace=velero

// Reconciler keeps the current configuration.
type Reconciler struct {
	Client    client.Client
	Recorder  record.EventRecorder
	Namespace string
	// Apply is called with every new valid configuration.
	Apply func(nodeconfig.Config)

	mu      sync.Mutex
	current nodeconfig.Config
	loaded  bool
}

// Current returns the configuration in force (the defaults until the ConfigMap was read).
func (r *Reconciler) Current() nodeconfig.Config {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.loaded {
		return nodeconfig.Default()
	}
	return r.current
}

// SetupWithManager registers the controller for the one ConfigMap.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	only := predicate.NewPredicateFuncs(func(o client.Object) bool {
		return o.GetNamespace() == r.Namespace && o.GetName() == nodeconfig.ConfigMapName
	})
	return ctrl.NewControllerManagedBy(mgr).Named("nodeagentconfig").
		For(&corev1.ConfigMap{}, builder.WithPredicates(only)).Complete(r)
}

// Reconcile reads the ConfigMap and applies it when valid.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	logger := log.FromContext(ctx).WithValues("configMap", req.String())
	cm := &corev1.ConfigMap{}
	err := r.Client.Get(ctx, req.NamespacedName, cm)
	if apierrors.IsNotFound(err) {
		r.set(ctx, nodeconfig.Default(), "ConfigMap absent; using the defaults")
		return ctrl.Result{}, nil
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	cfg, err := nodeconfig.Parse(cm.Data)
	if err != nil {
		logger.Error(err, "invalid node-agent configuration; the previous values stay in force")
		r.Recorder.Eventf(cm, corev1.EventTypeWarning, "InvalidConfig", "%v; the previous values stay in force", err)
		return ctrl.Result{}, nil // a fix to the ConfigMap triggers the next reconcile
	}
	r.set(ctx, cfg, "node-agent configuration applied")
	return ctrl.Result{}, nil
}

func (r *Reconciler) set(ctx context.Context, cfg nodeconfig.Config, msg string) {
	r.mu.Lock()
	changed := !r.loaded || !equality.Semantic.DeepEqual(r.current, cfg)
	r.current, r.loaded = cfg, true
	r.mu.Unlock()
	if !changed {
		return
	}
	log.FromContext(ctx).Info(msg,
		"concurrentRepoOperations", cfg.ConcurrentRepoOperations, "parallelFilesUpload", cfg.ParallelFilesUpload,
		"backupRepositoryLockCheckTimeout", cfg.BackupRepositoryLockCheckTimeout.String(), "keepLatestMaintenance", cfg.KeepLatestMaintenance,
		"prepareQueueLength", cfg.PrepareQueueLength, "podResources", podResources(cfg))
	if r.Apply != nil {
		r.Apply(cfg)
	}
}

// podResources describes the mover pods' resources for the log: "default" or requests and limits.
func podResources(cfg nodeconfig.Config) string {
	res := cfg.PodResources
	if res == nil {
		return "default"
	}
	var parts []string
	for _, l := range []struct {
		what string
		list corev1.ResourceList
	}{{"requests", res.Requests}, {"limits", res.Limits}} {
		for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if q, ok := l.list[name]; ok {
				parts = append(parts, fmt.Sprintf("%s.%s=%s", l.what, name, q.String()))
			}
		}
	}
	return strings.Join(parts, ",")
}
