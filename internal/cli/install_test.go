package cli

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferry-backup/ferry/config/crd"
	"github.com/ferry-backup/ferry/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Run(m) }

// ferry runs the ferry command against the test API server and returns what it printed.
func ferry(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	cmd := NewCommand(&out)
	cmd.SetArgs(append([]string{"--kubeconfig", testenv.Get(t).Kubeconfig}, args...))
	err := cmd.ExecuteContext(testenv.Context(t))
	return out.String(), err
}

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

	crds, err := crd.All()
	if err != nil {
		t.Fatal(err)
	}
	for run := 1; run <= 2; run++ {
		out, err := ferry(t, "install", "--namespace", "ferry-install-test")
		if err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		if got := strings.Count(out, "established"); got != len(crds) {
			t.Errorf("run %d: %d CRDs reported established, want %d:\n%s", run, got, len(crds), out)
		}
	}
	if err := env.Client.Get(ctx, client.ObjectKey{Name: "ferry-install-test"}, &corev1.Namespace{}); err != nil {
		t.Errorf("namespace: %v", err)
	}
	// Velero's server looks the node-agent up as the DaemonSet node-agent with pods labelled
	// role=node-agent; the seed's commands select name=node-agent.
	ds := &appsv1.DaemonSet{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: "ferry-install-test", Name: "node-agent"}, ds); err != nil {
		t.Fatalf("node-agent DaemonSet: %v", err)
	}
	for k, v := range map[string]string{"role": "node-agent", "name": "node-agent", "app.kubernetes.io/name": "ferry-node-agent"} {
		if got := ds.Spec.Template.Labels[k]; got != v {
			t.Errorf("node-agent pods labelled %s=%q, want %q", k, got, v)
		}
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

// TestReinstallRestartsNothingAndKeepsUserChanges patches the installed workloads the way
// `kubectl patch` does (an annotation, a nodeSelector, a toleration, an env var), then installs
// again: with the same image nothing is written and the patches stay; with a new image only the
// image changes and the pods roll.
func TestReinstallRestartsNothingAndKeepsUserChanges(t *testing.T) {
	env := testenv.Get(t)
	ctx := testenv.Context(t)
	const ns = "ferry-reinstall-test"
	install := func(image string) {
		t.Helper()
		if out, err := ferry(t, "install", "--namespace", ns, "--image", image); err != nil {
			t.Fatalf("install %s: %v\n%s", image, err, out)
		}
	}
	install("registry.example/ferry:v1")
	workloads := []struct {
		obj             client.Object
		name, container string
		resources       corev1.ResourceRequirements
	}{
		{&appsv1.Deployment{}, serverName, serverName, corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("256Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")}}},
		{&appsv1.DaemonSet{}, nodeAgentDaemonSetName, nodeAgentName, corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m"), corev1.ResourceMemory: resource.MustParse("384Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("2Gi")}}},
	}
	for _, w := range workloads {
		patch := fmt.Sprintf(`{"metadata":{"annotations":{"example.com/owner":"team-a"}},"spec":{"template":{"spec":{
			"nodeSelector":{"disktype":"ssd"},"tolerations":[{"key":"backup","operator":"Exists"}],
			"containers":[{"name":%q,"env":[{"name":"EXTRA","value":"1"}]}]}}}}`, w.container)
		w.obj.SetNamespace(ns)
		w.obj.SetName(w.name)
		if err := env.Client.Patch(ctx, w.obj, client.RawPatch(types.StrategicMergePatchType, []byte(patch)), client.FieldOwner("kubectl-patch")); err != nil {
			t.Fatalf("patch %s: %v", w.container, err)
		}
	}
	patched := map[string]client.Object{}
	for _, w := range workloads {
		patched[w.container] = w.obj.DeepCopyObject().(client.Object)
	}

	install("registry.example/ferry:v1")
	for _, w := range workloads {
		have := w.obj.DeepCopyObject().(client.Object)
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(w.obj), have); err != nil {
			t.Fatal(err)
		}
		if before := patched[w.container]; have.GetResourceVersion() != before.GetResourceVersion() || have.GetGeneration() != before.GetGeneration() {
			t.Errorf("%s written by an install that changes nothing: generation %d → %d, resourceVersion %s → %s",
				w.container, before.GetGeneration(), have.GetGeneration(), before.GetResourceVersion(), have.GetResourceVersion())
		}
		checkUserChanges(t, have, w.container)
		if c := podTemplate(have).Spec.Containers[0]; !equality.Semantic.DeepEqual(c.Resources, w.resources) {
			t.Errorf("%s resources = %+v, want %+v", w.container, c.Resources, w.resources)
		}
	}

	install("registry.example/ferry:v2")
	for _, w := range workloads {
		have := w.obj.DeepCopyObject().(client.Object)
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(w.obj), have); err != nil {
			t.Fatal(err)
		}
		if want := patched[w.container].GetGeneration() + 1; have.GetGeneration() != want {
			t.Errorf("%s generation after a new image = %d, want %d", w.container, have.GetGeneration(), want)
		}
		if image := podTemplate(have).Spec.Containers[0].Image; image != "registry.example/ferry:v2" {
			t.Errorf("%s image = %s, want registry.example/ferry:v2", w.container, image)
		}
		checkUserChanges(t, have, w.container)
	}
}

func podTemplate(obj client.Object) *corev1.PodTemplateSpec {
	switch obj := obj.(type) {
	case *appsv1.Deployment:
		return &obj.Spec.Template
	case *appsv1.DaemonSet:
		return &obj.Spec.Template
	}
	panic(fmt.Sprintf("no pod template in %T", obj))
}

// checkUserChanges fails unless the patch of TestReinstallRestartsNothingAndKeepsUserChanges is
// still there.
func checkUserChanges(t *testing.T, obj client.Object, container string) {
	t.Helper()
	pod := podTemplate(obj).Spec
	var env []string
	for _, e := range pod.Containers[0].Env {
		env = append(env, e.Name)
	}
	if obj.GetAnnotations()["example.com/owner"] != "team-a" || pod.NodeSelector["disktype"] != "ssd" ||
		len(pod.Tolerations) != 1 || !slices.Contains(env, "EXTRA") {
		t.Errorf("%s lost what the user set: annotations %v, nodeSelector %v, tolerations %v, env %v",
			container, obj.GetAnnotations(), pod.NodeSelector, pod.Tolerations, env)
	}
	if container == nodeAgentName && !slices.Contains(env, "NODE_NAME") {
		t.Errorf("%s lost NODE_NAME: env %v", container, env)
	}
}

func TestInstallResourcesFlags(t *testing.T) {
	out, err := ferry(t, "install", "--dry-run", "--server-requests", "cpu=1,memory=1Gi", "--node-agent-requests", "memory=2Gi",
		"--server-limits", "cpu=2,memory=3Gi", "--node-agent-limits", "memory=0", "--work-dir-size-limit", "10Gi")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"cpu: \"1\"\n            memory: 1Gi", "requests:\n            memory: 2Gi",
		"limits:\n            cpu: \"2\"\n            memory: 3Gi", "sizeLimit: 10Gi"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run output lacks %q", want)
		}
	}
	if n := strings.Count(out, "limits:"); n != 1 {
		t.Errorf("dry run output sets limits %d times, want once (memory=0 means no limit for the node-agent)", n)
	}
	for _, bad := range [][]string{{"--server-requests", "gpu=1"}, {"--node-agent-requests", "memory=lots"},
		{"--node-agent-limits", "memory=100Mi"}, {"--work-dir-size-limit", "big"}, {"--credential-secrets", "Not_A_Name"}} {
		_, err := ferry(t, append([]string{"install", "--dry-run"}, bad...)...)
		if err == nil || !strings.Contains(err.Error(), bad[0]) {
			t.Errorf("%v: want an error naming %s, got %v", bad, bad[0], err)
		}
	}
}

// Installing over an older Ferry, whose agent DaemonSet was ferry-node-agent, leaves one agent per
// node: the new node-agent DaemonSet, the old one deleted.
func TestInstallReplacesAnOlderFerrysDaemonSet(t *testing.T) {
	const ns = "ferry-install-upgrade"
	if out, err := ferry(t, "install", "--namespace", ns); err != nil {
		t.Fatalf("install: %v\n%s", err, out)
	}
	legacy := legacyDaemonSet(t, ns)
	out, err := ferry(t, "install", "--namespace", ns)
	if err != nil {
		t.Fatalf("install over the older one: %v\n%s", err, out)
	}
	if !strings.Contains(out, "DaemonSet ferry-node-agent of an older Ferry deleted") {
		t.Errorf("install did not say it deleted the older DaemonSet:\n%s", out)
	}
	if there := present(t, legacy); len(there) > 0 {
		t.Errorf("the older DaemonSet is still there: %v", there)
	}
	if there := present(t, &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "node-agent"}}); len(there) != 1 {
		t.Errorf("the node-agent DaemonSet is missing")
	}
}
