package cli

import (
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferry-backup/ferry/internal/testenv"
)

// accessCheck is one question to the API server's authorizer: may the subject do this?
type accessCheck struct {
	verb, resource, subresource, name string
	namespace                         string // empty: the install namespace
	allowed                           bool
}

// checkAccess asks the test API server (RBAC authorization) what a component's ServiceAccount
// may do, with SubjectAccessReviews.
func checkAccess(t *testing.T, ns, component string, checks []accessCheck) {
	t.Helper()
	env := testenv.Get(t)
	for _, c := range checks {
		group := "velero.io"
		switch c.resource {
		case "secrets", "pods", "configmaps", "events":
			group = ""
		case "leases":
			group = "coordination.k8s.io"
		}
		where := ns
		if c.namespace != "" {
			where = c.namespace
		}
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User:   "system:serviceaccount:" + ns + ":" + component,
			Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
			ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: where, Verb: c.verb, Group: group,
				Resource: c.resource, Subresource: c.subresource, Name: c.name},
		}}
		if err := env.Client.Create(testenv.Context(t), sar); err != nil {
			t.Fatal(err)
		}
		if sar.Status.Allowed != c.allowed {
			t.Errorf("%s may %s %s/%s %q in %s: %v, want %v (%s)", component, c.verb, c.resource, c.subresource, c.name, where,
				sar.Status.Allowed, c.allowed, sar.Status.Reason)
		}
	}
}

// The node-agent reads only the repository password Secrets and the credential Secrets
// --credential-secrets names, and writes only the status of its operations; the server keeps
// what it needs and no more. The test API server authorizes with RBAC, so the
// SubjectAccessReviews see the installed Roles and bindings at work.
func TestInstalledRBACIsLeastPrivilege(t *testing.T) {
	env := testenv.Get(t)
	ctx := testenv.Context(t)
	const ns = "ferry-rbac-test"
	mustInstall(t, ns)
	checkAccess(t, ns, nodeAgentName, []accessCheck{
		{verb: "get", resource: "secrets", name: "velero-repo-credentials", allowed: true},
		{verb: "get", resource: "secrets", name: "ferry-applied-repo-credentials", allowed: true},
		{verb: "get", resource: "secrets", name: "cloud-credentials", allowed: true}, // --credential-secrets' default
		{verb: "get", resource: "secrets", name: "site-b-credentials"},
		{verb: "get", resource: "secrets", name: "some-other-secret"},
		{verb: "list", resource: "secrets"},
		{verb: "watch", resource: "secrets"},
		{verb: "update", resource: "secrets", name: "velero-repo-credentials"},
		{verb: "get", resource: "secrets", name: "velero-repo-credentials", namespace: "default"},
		{verb: "patch", resource: "podvolumebackups", name: "pvb"},
		{verb: "update", resource: "podvolumebackups", name: "pvb"},
		{verb: "patch", resource: "podvolumerestores", name: "pvr"},
		{verb: "update", resource: "podvolumerestores", name: "pvr"},
		{verb: "create", resource: "podvolumebackups"},
		{verb: "delete", resource: "podvolumebackups", name: "pvb"},
		{verb: "patch", resource: "podvolumebackups", subresource: "status", name: "pvb", allowed: true},
		{verb: "patch", resource: "podvolumerestores", subresource: "status", name: "pvr", allowed: true},
		{verb: "watch", resource: "podvolumebackups", allowed: true},
		{verb: "get", resource: "pods", name: "web", namespace: "shop", allowed: true},
		// Its cache watches the pods of its node (a field selector RBAC cannot express), to start
		// restores once their pods are scheduled there; it never changes a pod outside its namespace.
		{verb: "watch", resource: "pods", namespace: "shop", allowed: true},
		{verb: "update", resource: "pods", name: "web", namespace: "shop"},
		{verb: "delete", resource: "pods", name: "web", namespace: "shop"},
	})
	checkAccess(t, ns, serverName, []accessCheck{
		{verb: "create", resource: "secrets", allowed: true}, // velero-repo-credentials when missing
		{verb: "watch", resource: "secrets", allowed: true},  // its cache; RBAC cannot narrow a watch to two names
		{verb: "update", resource: "secrets", name: "ferry-applied-repo-credentials", allowed: true},
		{verb: "update", resource: "secrets", name: "velero-repo-credentials"},
		{verb: "delete", resource: "secrets", name: "velero-repo-credentials"},
		{verb: "get", resource: "secrets", name: "velero-repo-credentials", namespace: "default"},
		{verb: "update", resource: "leases", name: "ferry-server.velero.io", allowed: true},
		{verb: "update", resource: "leases", name: "someone-elses"},
		{verb: "delete", resource: "leases", name: "ferry-server.velero.io"},
		{verb: "update", resource: "backups", name: "b"},
		{verb: "patch", resource: "backups", name: "b", allowed: true},
		{verb: "list", resource: "pods", namespace: "shop", allowed: true},
		{verb: "watch", resource: "pods", namespace: "shop"},
		{verb: "create", resource: "events", namespace: "shop"},
	})

	// The Role grants secrets with nothing but get, and only by name.
	role := &rbacv1.Role{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: nodeAgentName}, role); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, rule := range role.Rules {
		if slices.Contains(rule.Resources, "secrets") {
			if !slices.Equal(rule.Verbs, []string{"get"}) || len(rule.ResourceNames) == 0 {
				t.Errorf("node-agent rule on secrets: %+v, want get by name only", rule)
			}
			names = append(names, rule.ResourceNames...)
		}
	}
	slices.Sort(names)
	if want := []string{"cloud-credentials", "ferry-applied-repo-credentials", "velero-repo-credentials"}; !slices.Equal(names, want) {
		t.Errorf("node-agent may read the Secrets %v, want %v", names, want)
	}

	// --credential-secrets replaces the list: a second location's Secret becomes readable.
	mustInstall(t, ns, "--credential-secrets", "cloud-credentials,site-b-credentials")
	checkAccess(t, ns, nodeAgentName, []accessCheck{
		{verb: "get", resource: "secrets", name: "site-b-credentials", allowed: true},
		{verb: "get", resource: "secrets", name: "cloud-credentials", allowed: true},
		{verb: "get", resource: "secrets", name: "some-other-secret"},
	})
}

// The pods run as the Pod Security Standards say: ferry-server within restricted, the
// node-agent as root with four capabilities, both with read-only root file systems, memory
// limits and a bounded work directory.
func TestInstalledPodsAreLocked(t *testing.T) {
	const ns = "ferry-podsecurity-test"
	mustInstall(t, ns)
	deploy, ds := installedWorkloads(t, ns)
	server, agent := deploy.Spec.Template.Spec, ds.Spec.Template.Spec

	p, c := server.SecurityContext, server.Containers[0].SecurityContext
	if p == nil || c == nil || !isTrue(p.RunAsNonRoot) || p.RunAsUser == nil || *p.RunAsUser != nonRootID || p.RunAsGroup == nil || *p.RunAsGroup != nonRootID {
		t.Errorf("server runs as %+v / %+v, want the non-root user %d", p, c, nonRootID)
	}
	c = agent.Containers[0].SecurityContext
	if c == nil || c.RunAsUser == nil || *c.RunAsUser != 0 || c.Privileged != nil && *c.Privileged {
		t.Errorf("node-agent security context %+v, want uid 0 and not privileged", c)
	}
	for name, pod := range map[string]corev1.PodSpec{serverName: server, nodeAgentName: agent} {
		c := pod.Containers[0].SecurityContext
		if pod.SecurityContext == nil || pod.SecurityContext.SeccompProfile == nil || pod.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("%s seccomp: %+v, want RuntimeDefault", name, pod.SecurityContext)
		}
		if c == nil || !isTrue(c.ReadOnlyRootFilesystem) || c.AllowPrivilegeEscalation == nil || *c.AllowPrivilegeEscalation ||
			c.Capabilities == nil || !slices.Equal(c.Capabilities.Drop, []corev1.Capability{"ALL"}) {
			t.Errorf("%s container security context %+v, want a read-only root, no escalation, all capabilities dropped", name, c)
			continue
		}
		wantAdd := []corev1.Capability(nil)
		if name == nodeAgentName {
			wantAdd = []corev1.Capability{"CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID"}
		}
		add := slices.Clone(c.Capabilities.Add)
		slices.Sort(add)
		if !slices.Equal(add, wantAdd) {
			t.Errorf("%s adds capabilities %v, want %v", name, add, wantAdd)
		}
		if work := pod.Volumes[0]; work.EmptyDir == nil || work.EmptyDir.SizeLimit == nil || !work.EmptyDir.SizeLimit.Equal(resource.MustParse("4Gi")) {
			t.Errorf("%s work volume %+v, want an emptyDir of at most 4Gi", name, work)
		}
		if env := pod.Containers[0].Env; !slices.Contains(env, corev1.EnvVar{Name: "TMPDIR", Value: workDir}) {
			t.Errorf("%s env %v lacks TMPDIR=%s (the root file system is read-only)", name, env, workDir)
		}
		if _, ok := pod.Containers[0].Resources.Limits[corev1.ResourceMemory]; !ok {
			t.Errorf("%s has no memory limit: %+v", name, pod.Containers[0].Resources)
		}
	}
	mount := agent.Containers[0].VolumeMounts[1]
	if mount.MountPath != "/host_pods" || mount.MountPropagation == nil || *mount.MountPropagation != corev1.MountPropagationHostToContainer {
		t.Errorf("node-agent pods directory mount %+v, want /host_pods with HostToContainer propagation", mount)
	}
}

// The install namespace admits the node-agent (its hostPath volume: privileged only) and
// ferry-server would be admitted even where restricted is enforced; the labels are Ferry's
// only, so a label of the user's on the namespace survives a re-install.
func TestInstallNamespacePodSecurity(t *testing.T) {
	env := testenv.Get(t)
	ctx := testenv.Context(t)
	const ns = "ferry-psa-test"
	mustInstall(t, ns)
	have := &corev1.Namespace{}
	if err := env.Client.Get(ctx, client.ObjectKey{Name: ns}, have); err != nil {
		t.Fatal(err)
	}
	for k, v := range podSecurityLabels {
		if have.Labels[k] != v {
			t.Errorf("namespace label %s = %q, want %q", k, have.Labels[k], v)
		}
	}
	userLabel := []byte(`{"metadata":{"labels":{"team.example.com/owner":"storage"}}}`)
	if err := env.Client.Patch(ctx, have, client.RawPatch(types.MergePatchType, userLabel), client.FieldOwner("kubectl-label")); err != nil {
		t.Fatal(err)
	}
	mustInstall(t, ns)
	if err := env.Client.Get(ctx, client.ObjectKey{Name: ns}, have); err != nil {
		t.Fatal(err)
	}
	if have.Labels["team.example.com/owner"] != "storage" || have.Labels["pod-security.kubernetes.io/enforce"] != "privileged" {
		t.Errorf("namespace labels after a re-install: %v", have.Labels)
	}

	deploy, ds := installedWorkloads(t, ns)
	for _, level := range []string{"restricted", "baseline"} {
		strict := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ferry-psa-" + level,
			Labels: map[string]string{"pod-security.kubernetes.io/enforce": level}}}
		if err := env.Client.Create(ctx, strict); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
		if err := createPod(t, strict.Name, deploy.Spec.Template); err != nil {
			t.Errorf("ferry-server refused where %s is enforced: %v", level, err)
		}
		err := createPod(t, strict.Name, ds.Spec.Template)
		if err == nil || !strings.Contains(err.Error(), "hostPath") {
			t.Errorf("the node-agent where %s is enforced: %v, want refused for its hostPath volume", level, err)
		} else if level == "baseline" && strings.Contains(err.Error(), "capabilities") {
			t.Errorf("the node-agent's capabilities go beyond baseline: %v", err)
		}
	}
	for _, template := range []corev1.PodTemplateSpec{deploy.Spec.Template, ds.Spec.Template} {
		if err := createPod(t, ns, template); err != nil {
			t.Errorf("%s refused in the install namespace: %v", template.Spec.Containers[0].Name, err)
		}
	}
}

func mustInstall(t *testing.T, ns string, args ...string) {
	t.Helper()
	if out, err := ferry(t, append([]string{"install", "--namespace", ns}, args...)...); err != nil {
		t.Fatalf("install %v: %v\n%s", args, err, out)
	}
}

// installedWorkloads returns ferry-server's Deployment and the node-agent DaemonSet in ns.
func installedWorkloads(t *testing.T, ns string) (*appsv1.Deployment, *appsv1.DaemonSet) {
	t.Helper()
	deploy, ds := &appsv1.Deployment{}, &appsv1.DaemonSet{}
	for name, obj := range map[string]client.Object{serverName: deploy, nodeAgentDaemonSetName: ds} {
		if err := testenv.Get(t).Client.Get(testenv.Context(t), client.ObjectKey{Namespace: ns, Name: name}, obj); err != nil {
			t.Fatal(err)
		}
	}
	return deploy, ds
}

// createPod asks the API server, admission included, to create a pod of the template (a dry run).
func createPod(t *testing.T, ns string, template corev1.PodTemplateSpec) error {
	t.Helper()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "psa-", Labels: template.Labels}, Spec: template.Spec}
	return testenv.Get(t).Client.Create(testenv.Context(t), pod, client.DryRunAll)
}

func isTrue(b *bool) bool { return b != nil && *b }
