package compat

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/ferry-backup/ferry/api/shared"
	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/test/harness"
)

// tooLong is a duration Velero's CRDs store ("type: string" only) and Go cannot parse: with
// metav1.Duration, decoding it failed every List and Watch of the kind.
const tooLong = "9999999999h"

func withTooLongTimeout(p *velerov1.PodVolumeBackup) {
	p.Spec.OperationTimeout = &shared.Duration{Invalid: tooLong}
}

// A controller-runtime cache of PodVolumeBackups syncs although one of them holds a duration Go
// cannot parse, and hands out both objects, the bad one with its text kept.
func TestCacheSyncsWithADurationGoCannotRead(t *testing.T) {
	log.SetLogger(logr.Discard()) // the cache's reflector logs through controller-runtime's logger
	c := harness.New(t)
	pod := c.CreatePod(c.StartNode("node-cache"), c.Namespace("app"), "web", harness.VolumeSpec{Name: "data", Claim: "web-data"})
	c.BackupVolume(pod, "data", "bad-timeout", withTooLongTimeout, func(p *velerov1.PodVolumeBackup) { p.Spec.Node = "elsewhere" })
	c.BackupVolume(pod, "data", "good-timeout", func(p *velerov1.PodVolumeBackup) {
		p.Spec.Node, p.Spec.OperationTimeout = "elsewhere", &shared.Duration{Duration: time.Hour}
	})
	informers, err := cache.New(c.Env.Config, cache.Options{Scheme: c.Client.Scheme(),
		DefaultNamespaces: map[string]cache.Config{c.Install: {}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithTimeout(context.Background(), time.Minute)
	defer stop()
	if _, err := informers.GetInformer(ctx, &velerov1.PodVolumeBackup{}); err != nil {
		t.Fatal(err)
	}
	go func() { _ = informers.Start(ctx) }()
	synced, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if !informers.WaitForCacheSync(synced) {
		t.Fatal("the PodVolumeBackup cache did not sync")
	}
	list := &velerov1.PodVolumeBackupList{}
	if err := informers.List(ctx, list, client.InNamespace(c.Install)); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, p := range list.Items {
		got[p.Name] = p.Spec.OperationTimeout.String()
	}
	if len(got) != 2 || got["bad-timeout"] != tooLong || got["good-timeout"] != "1h0m0s" {
		t.Fatalf("cache holds %v, want bad-timeout %s and good-timeout 1h0m0s", got, tooLong)
	}
}

// The node-agent starts with a PodVolumeBackup whose operationTimeout Go cannot parse among its
// objects: it backs up the good one, fails the bad one naming the field, and leaves the user's
// text in its spec.
func TestNodeAgentFailsOnlyTheOperationGoCannotRead(t *testing.T) {
	c := harness.New(t)
	node := c.StartNode("node-a")
	web := c.CreatePod(node, c.Namespace("app"), "web", harness.VolumeSpec{Name: "data", Claim: "web-data"})
	if err := harness.FillVolume(web.Dirs["data"], 2, 1<<16, 1); err != nil {
		t.Fatal(err)
	}
	// Both exist before the agent starts: its first List holds the bad one.
	node.Stop(syscall.SIGTERM)
	bad := c.BackupVolume(web, "data", "bad-timeout", withTooLongTimeout)
	good := c.BackupVolume(web, "data", "good-timeout")
	node.Start()
	c.WaitPhase(good, velerov1.PodVolumePhaseCompleted, 2*time.Minute)
	c.WaitPhase(bad, velerov1.PodVolumePhaseFailed, 30*time.Second)
	if want := `spec.operationTimeout: "` + tooLong + `" is not a duration`; !strings.HasPrefix(bad.Status.Message, want) {
		t.Errorf("bad-timeout failed with %q, want it to start with %q", bad.Status.Message, want)
	}
	stored := &unstructured.Unstructured{}
	stored.SetGroupVersionKind(velerov1.GroupVersion.WithKind("PodVolumeBackup"))
	if err := c.Client.Get(context.Background(), client.ObjectKeyFromObject(bad), stored); err != nil {
		t.Fatal(err)
	}
	if text, _, _ := unstructured.NestedString(stored.Object, "spec", "operationTimeout"); text != tooLong {
		t.Errorf("spec.operationTimeout is now %q, want the user's %q kept", text, tooLong)
	}
}
