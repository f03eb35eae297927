package cli

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferry-backup/ferry/internal/testenv"
)

// veleroInstall creates what `velero install --use-node-agent` leaves in namespace ns that
// --in-place-of-velero deals with: the server's Deployment and the node-agent DaemonSet.
func veleroInstall(t *testing.T, ns string) (*appsv1.Deployment, *appsv1.DaemonSet) {
	t.Helper()
	env, ctx := testenv.Get(t), testenv.Context(t)
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	container := corev1.Container{Name: "node-agent", Image: "velero/velero:v1.18.3", Command: []string{"/velero"},
		Args: []string{"node-agent", "server"},
		Env: []corev1.EnvVar{{Name: "VELERO_NAMESPACE", Value: ns}, {Name: "VELERO_SCRATCH_DIR", Value: "/scratch"},
			{Name: "AWS_SHARED_CREDENTIALS_FILE", Value: "/credentials/cloud"}},
		VolumeMounts: []corev1.VolumeMount{{Name: "host-pods", MountPath: "/host_pods"}, {Name: "scratch", MountPath: "/scratch"},
			{Name: "cloud-credentials", MountPath: "/credentials"}}}
	pod := corev1.PodSpec{ServiceAccountName: "velero", Containers: []corev1.Container{container}, Volumes: []corev1.Volume{
		{Name: "host-pods", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/var/lib/kubelet/pods"}}},
		{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: "cloud-credentials", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "cloud-credentials"}}}}}
	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "node-agent", Labels: map[string]string{"component": "velero"}},
		Spec: appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"name": "node-agent"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"name": "node-agent", "role": "node-agent", "component": "velero"}},
				Spec: pod}}}
	server := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "velero"},
		Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"deploy": "velero"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"deploy": "velero"}},
				Spec: corev1.PodSpec{ServiceAccountName: "velero", Containers: []corev1.Container{{Name: "velero", Image: "velero/velero:v1.18.3"}}}}}}
	for _, obj := range []client.Object{ds, server} {
		if err := env.Client.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	return server, ds
}

// `ferry install --in-place-of-velero` changes only the pod template of Velero's node-agent
// DaemonSet (Ferry's program, ServiceAccount and security, Velero's labels and credential
// files kept) and adds the node-agent's and data mover's rules, with patch on the objects
// whose CRDs under Velero have no status subresource; Velero's server Deployment and the CRDs
// are not touched, and a second run keeps Velero's template, not Ferry's. `ferry uninstall`
// puts Velero's template back and removes only what install added.
func TestInPlaceOfVeleroSwapsOnlyTheNodeAgent(t *testing.T) {
	env, ctx := testenv.Get(t), testenv.Context(t)
	const ns = "velero-in-place"
	server, velero := veleroInstall(t, ns)
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := env.Client.Get(ctx, client.ObjectKey{Name: veleroCRD}, crd); err != nil {
		t.Fatal(err)
	}
	if _, err := ferry(t, "install", "-n", ns, "--image", "registry.local/ferry:test"); err == nil || !strings.Contains(err.Error(), "--in-place-of-velero") {
		t.Errorf("a plain install over Velero's node-agent: %v, want a refusal naming --in-place-of-velero", err)
	}
	for run := 1; run <= 2; run++ {
		if _, err := ferry(t, "install", "--in-place-of-velero", "-n", ns, "--image", "registry.local/ferry:test", "--wait", "0"); err != nil {
			t.Fatalf("install run %d: %v", run, err)
		}
	}

	ds := &appsv1.DaemonSet{}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(velero), ds); err != nil {
		t.Fatal(err)
	}
	pod := ds.Spec.Template.Spec
	c := pod.Containers[0]
	if pod.ServiceAccountName != nodeAgentName || c.Image != "registry.local/ferry:test" || c.Command[0] != "/"+nodeAgentName ||
		!slices.Contains(c.Args, "--namespace="+ns) || !slices.Contains(c.Args, "--data-movers=ferry,velero") || c.SecurityContext == nil || c.SecurityContext.Privileged != nil {
		t.Errorf("the DaemonSet's pod is not Ferry's node-agent: serviceAccount %s, %s %v %v", pod.ServiceAccountName, c.Image, c.Command, c.Args)
	}
	for k, v := range map[string]string{"name": "node-agent", "role": "node-agent", "component": "velero", "app.kubernetes.io/name": nodeAgentName} {
		if ds.Spec.Template.Labels[k] != v {
			t.Errorf("pod label %s=%q, want %q", k, ds.Spec.Template.Labels[k], v)
		}
	}
	if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
		return e == corev1.EnvVar{Name: "AWS_SHARED_CREDENTIALS_FILE", Value: "/credentials/cloud"}
	}) ||
		slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "VELERO_NAMESPACE" }) ||
		!slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == "cloud-credentials" && m.ReadOnly }) ||
		!slices.ContainsFunc(pod.Volumes, func(v corev1.Volume) bool { return v.Secret != nil && v.Secret.SecretName == "cloud-credentials" }) ||
		slices.ContainsFunc(pod.Volumes, func(v corev1.Volume) bool { return v.Name == "scratch" }) {
		t.Errorf("Velero's credential file is not carried over alone: env %v, mounts %v", c.Env, c.VolumeMounts)
	}
	saved := corev1.PodTemplateSpec{}
	if err := json.Unmarshal([]byte(ds.Annotations[replacedTemplateAnnotation]), &saved); err != nil {
		t.Fatalf("annotation %s: %v", replacedTemplateAnnotation, err)
	}
	if saved.Spec.ServiceAccountName != "velero" || saved.Spec.Containers[0].Image != "velero/velero:v1.18.3" {
		t.Errorf("the kept template is not Velero's after two installs: %s %s", saved.Spec.ServiceAccountName, saved.Spec.Containers[0].Image)
	}
	role := &rbacv1.Role{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: nodeAgentName}, role); err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(role.Rules, func(r rbacv1.PolicyRule) bool {
		return slices.Contains(r.Resources, "podvolumebackups") && slices.Contains(r.Verbs, "patch")
	}) {
		t.Errorf("the node-agent may not patch podvolumebackups under Velero's CRDs: %+v", role.Rules)
	}
	for _, absent := range []client.Object{&appsv1.Deployment{}, &corev1.ServiceAccount{}} {
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: serverName}, absent); !apierrors.IsNotFound(err) {
			t.Errorf("%T %s installed in place of Velero's node-agent: %v", absent, serverName, err)
		}
	}
	untouched := func(when string) {
		t.Helper()
		d, now := &appsv1.Deployment{}, &apiextensionsv1.CustomResourceDefinition{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(server), d); err != nil || d.ResourceVersion != server.ResourceVersion {
			t.Errorf("%s: Velero's server Deployment changed (%v)", when, err)
		}
		if err := env.Client.Get(ctx, client.ObjectKey{Name: veleroCRD}, now); err != nil || now.ResourceVersion != crd.ResourceVersion {
			t.Errorf("%s: CRD %s changed (%v)", when, veleroCRD, err)
		}
	}
	untouched("after install")

	out, err := ferry(t, "uninstall", "-n", ns, "--wait", "0")
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(velero), ds); err != nil {
		t.Fatal(err)
	}
	if _, ok := ds.Annotations[replacedTemplateAnnotation]; ok ||
		!equality.Semantic.DeepEqual(ds.Spec.Template.Spec.Containers, velero.Spec.Template.Spec.Containers) ||
		ds.Spec.Template.Spec.ServiceAccountName != "velero" || !equality.Semantic.DeepEqual(ds.Spec.Template.Labels, velero.Spec.Template.Labels) {
		t.Errorf("uninstall did not put Velero's node-agent back:\n%s\ntemplate %+v", out, ds.Spec.Template)
	}
	for _, gone := range []client.Object{&rbacv1.Role{}, &corev1.ServiceAccount{}, &rbacv1.ClusterRole{}} {
		name := nodeAgentName
		if _, ok := gone.(*rbacv1.ClusterRole); ok {
			name += "-" + ns
		}
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, gone); !apierrors.IsNotFound(err) {
			t.Errorf("%T %s left by uninstall: %v", gone, name, err)
		}
	}
	if err := env.Client.Get(ctx, client.ObjectKey{Name: ns}, &corev1.Namespace{}); err != nil {
		t.Errorf("Velero's namespace: %v", err)
	}
	untouched("after uninstall")
	if !strings.Contains(out, "not touched") {
		t.Errorf("uninstall did not say what it kept:\n%s", out)
	}
}

// Without Velero's node-agent DaemonSet there is nothing to put Ferry's in: the error says so
// and nothing is created.
func TestInPlaceOfVeleroNeedsVelerosNodeAgent(t *testing.T) {
	env, ctx := testenv.Get(t), testenv.Context(t)
	const ns = "no-velero-here"
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	_, err := ferry(t, "install", "--in-place-of-velero", "-n", ns, "--wait", "0")
	if err == nil || !strings.Contains(err.Error(), "no DaemonSet node-agent in namespace "+ns) {
		t.Fatalf("install --in-place-of-velero without Velero's node-agent: %v", err)
	}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: nodeAgentName}, &corev1.ServiceAccount{}); !apierrors.IsNotFound(err) {
		t.Errorf("ServiceAccount %s created anyway: %v", nodeAgentName, err)
	}
}
