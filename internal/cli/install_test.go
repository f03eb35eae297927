package cli

import (
	"bytes"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferry-backup/ferry/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Run(m) }

// TestInstallIsRepeatable runs `ferry install` twice against a real API server: the namespace is
// created, every CRD is reported established, and a CRD changed by hand is put back.
func TestInstallIsRepeatable(t *testing.T) {
	env := testenv.Get(t)
	ctx := testenv.Context(t)

	drifted := &apiextensionsv1.CustomResourceDefinition{}
	if err := env.Client.Get(ctx, client.ObjectKey{Name: "datauploads.velero.io"}, drifted); err != nil {
		t.Fatal(err)
	}
	drifted.Spec.Names.ShortNames = []string{"wrong"}
	if err := env.Client.Update(ctx, drifted); err != nil {
		t.Fatal(err)
	}

	for run := 1; run <= 2; run++ {
		var out bytes.Buffer
		cmd := NewCommand(&out)
		cmd.SetArgs([]string{"install", "--kubeconfig", env.Kubeconfig, "--namespace", "ferry-install-test"})
		if err := cmd.ExecuteContext(ctx); err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		if got := strings.Count(out.String(), "established"); got != 8 {
			t.Errorf("run %d: %d CRDs reported established, want 8:\n%s", run, got, out.String())
		}
	}
	if err := env.Client.Get(ctx, client.ObjectKey{Name: "ferry-install-test"}, &corev1.Namespace{}); err != nil {
		t.Errorf("namespace: %v", err)
	}
	fixed := &apiextensionsv1.CustomResourceDefinition{}
	if err := env.Client.Get(ctx, client.ObjectKey{Name: "datauploads.velero.io"}, fixed); err != nil {
		t.Fatal(err)
	}
	if got := fixed.Spec.Names.ShortNames; len(got) != 1 || got[0] != "du" {
		t.Errorf("short names after install = %v, want [du]", got)
	}
}

func TestInstallReportsAnUnreachableCluster(t *testing.T) {
	var out bytes.Buffer
	cmd := NewCommand(&out)
	cmd.SetArgs([]string{"install", "--kubeconfig", t.TempDir() + "/missing.kubeconfig"})
	err := cmd.ExecuteContext(t.Context())
	if err == nil || !strings.Contains(err.Error(), "missing.kubeconfig") {
		t.Fatalf("want an error naming the kubeconfig file, got %v", err)
	}
}
