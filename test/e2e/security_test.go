package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/controller/backup"
)

// Ferry's pods run as installed: ferry-server as uid 65532 and the node-agent as root with four
// capabilities, both with read-only root file systems, and both Ready and never restarted under
// these settings (the other stories back up and restore through them). The image has no shell,
// so what took effect is read from the admitted pods and, where the kubelet reports it, from the
// identity their processes were started with.
func TestFerryPodsRunLockedDown(t *testing.T) {
	c, _ := story(t, "security")
	ctx := t.Context()
	for _, w := range []struct {
		selector string
		uid      int64
		caps     []corev1.Capability
	}{
		{"app.kubernetes.io/name=ferry-server", 65532, nil},
		{"name=node-agent", 0, []corev1.Capability{"CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID"}},
	} {
		pods := &corev1.PodList{}
		must(t, c.Client.List(ctx, pods, client.InNamespace(InstallNamespace), labels(w.selector)))
		if len(pods.Items) == 0 {
			t.Fatalf("no pod %s in %s", w.selector, InstallNamespace)
		}
		for _, p := range pods.Items {
			if problem := lockedDown(p, w.uid, w.caps); problem != "" {
				t.Errorf("pod %s: %s", p.Name, problem)
			}
		}
	}
	ns := &corev1.Namespace{}
	must(t, c.Client.Get(ctx, client.ObjectKey{Name: InstallNamespace}, ns))
	if ns.Labels["pod-security.kubernetes.io/enforce"] != "privileged" || ns.Labels["pod-security.kubernetes.io/audit"] != "restricted" {
		t.Errorf("namespace %s Pod Security labels: %v", InstallNamespace, ns.Labels)
	}
	// What kubectl shows a user, for the log.
	out, err := c.Kubectl(ctx, "", "get", "pods", "-n", InstallNamespace, "-o",
		`jsonpath={range .items[*]}{.metadata.name}{" runAsUser="}{.spec.containers[0].securityContext.runAsUser}{.spec.securityContext.runAsUser}`+
			`{" readOnlyRoot="}{.spec.containers[0].securityContext.readOnlyRootFilesystem}{" add="}{.spec.containers[0].securityContext.capabilities.add}`+
			`{" kubelet uid="}{.status.containerStatuses[0].user.linux.uid}{"\n"}{end}`)
	must(t, err)
	t.Logf("Ferry's pods:\n%s", indent(out))
}

// lockedDown describes how a running Ferry pod differs from its intended security settings.
func lockedDown(p corev1.Pod, uid int64, caps []corev1.Capability) string {
	if len(p.Spec.Containers) != 1 || len(p.Status.ContainerStatuses) != 1 {
		return fmt.Sprintf("%d containers, %d statuses", len(p.Spec.Containers), len(p.Status.ContainerStatuses))
	}
	sc, psc, st := p.Spec.Containers[0].SecurityContext, p.Spec.SecurityContext, p.Status.ContainerStatuses[0]
	if sc == nil || psc == nil {
		return "no security context"
	}
	runAs := sc.RunAsUser
	if runAs == nil {
		runAs = psc.RunAsUser
	}
	var add []corev1.Capability
	if sc.Capabilities != nil {
		add = slices.Clone(sc.Capabilities.Add)
		slices.Sort(add)
	}
	switch {
	case !st.Ready || st.RestartCount != 0:
		return fmt.Sprintf("ready %v after %d restarts", st.Ready, st.RestartCount)
	case runAs == nil || *runAs != uid:
		return fmt.Sprintf("runs as %v, want uid %d", runAs, uid)
	case st.User != nil && st.User.Linux != nil && st.User.Linux.UID != uid:
		return fmt.Sprintf("the kubelet started it as uid %d, want %d", st.User.Linux.UID, uid)
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		return "its root file system is writable"
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.Privileged != nil && *sc.Privileged:
		return "it may escalate privileges"
	case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || !slices.Equal(add, caps):
		return fmt.Sprintf("capabilities %+v, want all dropped and %v added", sc.Capabilities, caps)
	case psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
		return fmt.Sprintf("seccomp profile %+v, want RuntimeDefault", psc.SeccompProfile)
	case p.Spec.Containers[0].Resources.Limits.Memory().IsZero():
		return "no memory limit"
	}
	return ""
}

// The node-agent's ServiceAccount may write the status of its operations but not the operations,
// and may read the repository password and the location's credentials but no other Secret, as
// the cluster's own authorizer (kubectl auth can-i) sees it.
func TestNodeAgentPermissions(t *testing.T) {
	c, _ := story(t, "agent-rbac")
	ctx := t.Context()
	agent := "--as=system:serviceaccount:" + InstallNamespace + ":ferry-node-agent"
	for _, check := range []struct {
		args []string
		want string
	}{
		{[]string{"patch", "podvolumebackups.velero.io"}, "no"},
		{[]string{"update", "podvolumebackups.velero.io"}, "no"},
		{[]string{"patch", "podvolumerestores.velero.io"}, "no"},
		{[]string{"patch", "podvolumebackups.velero.io", "--subresource=status"}, "yes"},
		{[]string{"patch", "podvolumerestores.velero.io", "--subresource=status"}, "yes"},
		{[]string{"get", "secrets/velero-repo-credentials"}, "yes"},
		{[]string{"get", "secrets/cloud-credentials"}, "yes"},
		{[]string{"get", "secrets/some-other-secret"}, "no"},
		{[]string{"list", "secrets"}, "no"},
		{[]string{"watch", "secrets"}, "no"},
		{[]string{"get", "secrets/velero-repo-credentials", "-n", "default"}, "no"},
	} {
		args := append([]string{"auth", "can-i", "-n", InstallNamespace, agent}, check.args...)
		out, err := c.Kubectl(ctx, "", args...) // exits 1 for "no"
		got := answer(out)
		if got == "" {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		if got != check.want {
			t.Errorf("node-agent: can-i %s = %s, want %s", strings.Join(check.args, " "), got, check.want)
		}
	}
}

// answer is the "yes" or "no" of kubectl auth can-i ("no - reason" included), past any warnings.
func answer(out string) string {
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && (f[0] == "yes" || f[0] == "no") {
			return f[0]
		}
	}
	return ""
}

// Repository maintenance runs in a Job of its own, with the server's image, service account and
// security settings: the location's BackupRepository records a successful run reported by the
// Job's pod, and that pod ran as the server's unprivileged user with a read-only root.
func TestMaintenanceRunsInALockedDownJob(t *testing.T) {
	c, _ := story(t, "maintenance")
	ctx := t.Context()
	must(t, c.EnsureRepository(ctx, LocationName))
	br := &velerov1.BackupRepository{}
	key := client.ObjectKey{Namespace: InstallNamespace, Name: backup.RepositoryName(LocationName)}
	must(t, c.Poll(ctx, 5*time.Minute, "a maintenance run recorded by a Job", func() (bool, string, error) {
		err := c.Client.Get(ctx, key, br)
		for _, m := range br.Status.RecentMaintenance {
			if m.Result == velerov1.BackupRepositoryMaintenanceSucceeded && strings.Contains(m.Message, "maintenance") &&
				!strings.Contains(m.Message, "could not be read") {
				return true, "", err
			}
		}
		return false, fmt.Sprintf("%d runs recorded: %+v; %s", len(br.Status.RecentMaintenance), br.Status.RecentMaintenance, br.Status.Message), err
	}))
	t.Logf("maintenance runs: %+v", br.Status.RecentMaintenance)
	pods := &corev1.PodList{}
	must(t, c.Client.List(ctx, pods, client.InNamespace(InstallNamespace), labels("app.kubernetes.io/name=ferry-maintenance")))
	if len(pods.Items) == 0 {
		t.Fatal("no maintenance Job pod kept")
	}
	for _, p := range pods.Items {
		sc, psc := p.Spec.Containers[0].SecurityContext, p.Spec.SecurityContext
		switch {
		case p.Spec.ServiceAccountName != "ferry-server":
			t.Errorf("pod %s runs as service account %q, want ferry-server's", p.Name, p.Spec.ServiceAccountName)
		case sc == nil || psc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
			(sc.RunAsUser == nil && psc.RunAsUser == nil) || sc.Capabilities == nil || len(sc.Capabilities.Add) > 0:
			t.Errorf("pod %s is not locked down like the server: %+v, %+v", p.Name, sc, psc)
		case p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed:
			t.Errorf("pod %s of a recorded Job is %s", p.Name, p.Status.Phase)
		}
	}
}
