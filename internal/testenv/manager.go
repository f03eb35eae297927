package testenv

import (
	"context"
	"testing"
	"time"

	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// StartManager runs a controller manager on the API server until the test ends, with a cache of
// namespace only and the controllers setup registers. Every request it makes is counted in the
// returned Requests.
func StartManager(t testing.TB, namespace string, setup func(ctrl.Manager) error) *Requests {
	t.Helper()
	env := Get(t)
	cfg, requests := CountRequests(env.Config)
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{Scheme: env.Client.Scheme(), Metrics: metricsserver.Options{BindAddress: "0"},
		Cache:      cache.Options{DefaultNamespaces: map[string]cache.Config{namespace: {}}},
		Controller: config.Controller{SkipNameValidation: ptr.To(true)}})
	if err != nil {
		t.Fatalf("testenv: manager: %v", err)
	}
	if err := setup(mgr); err != nil {
		t.Fatalf("testenv: set up the manager: %v", err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("testenv: manager: %v", err)
		}
	})
	return requests
}

// Eventually polls cond until it returns true, failing the test with cond's last description
// after timeout.
func Eventually(t testing.TB, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, desc := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not reached within %v: %s", timeout, desc)
		}
		time.Sleep(20 * time.Millisecond) // polling the API server; the condition is the synchronisation
	}
}
