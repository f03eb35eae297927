package cli

import (
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/ferry-backup/ferry/internal/testenv"
)

// TestContextFlag uses a kubeconfig whose current context points nowhere: --context picks the
// test API server's context, and without it the command fails.
func TestContextFlag(t *testing.T) {
	cfg, err := clientcmd.LoadFromFile(testenv.Get(t).Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	good := cfg.CurrentContext
	cfg.Clusters["nowhere"] = &clientcmdapi.Cluster{Server: "https://127.0.0.1:1"}
	cfg.Contexts["nowhere"] = &clientcmdapi.Context{Cluster: "nowhere", AuthInfo: cfg.Contexts[good].AuthInfo}
	cfg.CurrentContext = "nowhere"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	ns := testenv.Namespace(t, "cli-context")
	mustFerry(t, "-n", ns, "backup", "create", "here")
	// ferry's helpers pass the test kubeconfig first; a later --kubeconfig wins.
	if out, err := ferry(t, "--kubeconfig", path, "-n", ns, "backup", "get"); err == nil {
		t.Errorf("the current context nowhere answered:\n%s", out)
	}
	out := mustFerry(t, "--kubeconfig", path, "--context", good, "-n", ns, "backup", "get", "-o", "jsonpath={.items[*].metadata.name}")
	if strings.TrimSpace(out) != "here" {
		t.Errorf("--context %s: %q", good, out)
	}
}
