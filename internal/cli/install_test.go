package cli

import (
	"bytes"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
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
	ds := &appsv1.DaemonSet{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: "ferry-install-test", Name: "ferry-node-agent"}, ds); err != nil {
		t.Fatalf("node-agent DaemonSet: %v", err)
	}
	pod := ds.Spec.Template.Spec
	if pod.Volumes[len(pod.Volumes)-1].HostPath == nil || pod.Volumes[len(pod.Volumes)-1].HostPath.Path != "/var/lib/kubelet/pods" ||
		pod.Containers[0].Env[0].Name != "NODE_NAME" || pod.ServiceAccountName != "ferry-node-agent" {
		t.Errorf("node-agent pod spec: %+v", pod)
	}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: "ferry-install-test", Name: "ferry-server"}, &appsv1.Deployment{}); err != nil {
		t.Errorf("server Deployment: %v", err)
	}
	role := &rbacv1.Role{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: "ferry-install-test", Name: "ferry-node-agent"}, role); err != nil || len(role.Rules) == 0 {
		t.Errorf("node-agent Role: %+v, %v", role.Rules, err)
	}
	cr := &rbacv1.ClusterRole{}
	if err := env.Client.Get(ctx, client.ObjectKey{Name: "ferry-node-agent-ferry-install-test"}, cr); err != nil {
		t.Fatalf("node-agent ClusterRole: %v", err)
	}
	for _, rule := range cr.Rules {
		for _, res := range rule.Resources {
			if res == "secrets" {
				t.Errorf("the node-agent may read Secrets cluster-wide: %+v", rule)
			}
		}
	}
	fixed := &apiextensionsv1.CustomResourceDefinition{}
	if err := env.Client.Get(ctx, client.ObjectKey{Name: "datauploads.velero.io"}, fixed); err != nil {
		t.Fatal(err)
	}
	if got := fixed.Spec.Names.ShortNames; len(got) != 1 || got[0] != "du" {
		t.Errorf("short names after install = %v, want [du]", got)
	}
}

func TestInstallDryRunPrintsEverything(t *testing.T) {
	var out bytes.Buffer
	cmd := NewCommand(&out)
	cmd.SetArgs([]string{"install", "--dry-run", "--image", "registry.example/ferry:v1", "--namespace", "backup"})
	if err := cmd.ExecuteContext(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"kind: CustomResourceDefinition", "kind: DaemonSet", "kind: Deployment", "kind: ClusterRoleBinding",
		"image: registry.example/ferry:v1", "namespace: backup", "path: /var/lib/kubelet/pods"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("dry run output lacks %q", want)
		}
	}
}

func TestInstallImagePullPolicy(t *testing.T) {
	var out bytes.Buffer
	cmd := NewCommand(&out)
	cmd.SetArgs([]string{"install", "--dry-run", "--image", "registry.local/ferry:dev", "--image-pull-policy", "Never"})
	if err := cmd.ExecuteContext(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), "imagePullPolicy: Never"); n != 2 {
		t.Errorf("want imagePullPolicy Never on the server and the node-agent, found it %d times", n)
	}

	cmd = NewCommand(&out)
	cmd.SetArgs([]string{"install", "--dry-run", "--image-pull-policy", "Sometimes"})
	if err := cmd.ExecuteContext(t.Context()); err == nil || !strings.Contains(err.Error(), "--image-pull-policy") {
		t.Fatalf("want an error naming --image-pull-policy, got %v", err)
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
