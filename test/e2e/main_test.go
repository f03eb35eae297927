package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"testing"
	"time"
)

// cluster is the real cluster, with Ferry installed; nil when the tier does not run.
var cluster *Cluster

// skipReason says why the tier does not run in this process.
var skipReason = "the end-to-end tier runs on a real cluster: `make test-e2e` (as root) starts one and sets FERRY_E2E_ENV"

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	envFile := os.Getenv("FERRY_E2E_ENV")
	if envFile == "" {
		return m.Run()
	}
	c, err := Connect(envFile, os.Getenv("FERRY_E2E_IMAGE"))
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	if err := c.Install(ctx, func(format string, args ...any) { fmt.Printf(format+"\n", args...) }); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: install Ferry: %v\n%s", err, c.Diagnose(ctx, InstallNamespace))
		return 1
	}
	fmt.Printf("e2e: Ferry installed and Ready in %s (image %s)\n", time.Since(start).Round(time.Millisecond), c.Image)
	cluster = c
	return m.Run()
}

// story returns the cluster and a fresh namespace name for one story; on failure it logs the
// diagnostics of Ferry and of that namespace.
func story(t *testing.T, prefix string) (*Cluster, string) {
	t.Helper()
	if cluster == nil {
		t.Skip(skipReason)
	}
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	ns := prefix + "-" + hex.EncodeToString(b)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if t.Failed() {
			t.Logf("diagnostics:\n%s", cluster.Diagnose(ctx, ns))
		}
	})
	return cluster, ns
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
