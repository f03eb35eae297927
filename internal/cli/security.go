package cli

import (
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
)

// nonRootID is the user and group ferry-server runs as: distroless' "nonroot". Nothing in the
// image is owned by it; the programs are world-executable and it writes only to its emptyDir.
const nonRootID = 65532

// podSecurityLabels admit what Ferry runs into the install namespace. The node-agent mounts the
// kubelet's pods directory (hostPath), which only the privileged level admits; Pod Security
// Admission works per namespace, so every pod of the namespace is admitted at that level. Pods
// and pod templates that go beyond restricted (the node-agent, by design) are recorded in the
// audit log. No warn level: it would warn about the node-agent DaemonSet on every write of it,
// every `ferry install` included (templates are checked whether they changed or not).
var podSecurityLabels = map[string]string{
	"pod-security.kubernetes.io/enforce": "privileged",
	"pod-security.kubernetes.io/audit":   "restricted",
}

// seccompRuntimeDefault is the container runtime's default seccomp profile.
var seccompRuntimeDefault = &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}

// serverSecurity meets the restricted Pod Security Standard: a fixed non-root user, no
// privilege escalation, no capabilities, a read-only root file system.
func serverSecurity(spec *corev1.PodSpec) {
	id, yes, no := int64(nonRootID), true, false
	spec.SecurityContext = &corev1.PodSecurityContext{RunAsNonRoot: &yes, RunAsUser: &id, RunAsGroup: &id, SeccompProfile: seccompRuntimeDefault}
	spec.Containers[0].SecurityContext = &corev1.SecurityContext{
		AllowPrivilegeEscalation: &no, ReadOnlyRootFilesystem: &yes,
		Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	}
}

// nodeAgentCapabilities are all the node-agent keeps of root's powers. It runs as uid 0 because
// the volumes' files belong to any user; these let it read and restore them exactly (a restore
// creates a file, sets its owner, which clears setuid/setgid, then its mode, then its times).
// Not DAC_READ_SEARCH: DAC_OVERRIDE covers reading and searching too, and DAC_READ_SEARCH adds
// open_by_handle_at, the way out of a container that the baseline Pod Security Standard shuts.
var nodeAgentCapabilities = []corev1.Capability{
	"DAC_OVERRIDE", // backup: read every file and directory whatever its mode; restore: write into them, and the .velero marker
	"CHOWN",        // restore: give files, directories and symlinks their original owner and group
	"FOWNER",       // restore: set modes (setuid bits included) and times of files it does not own
	"FSETID",       // restore: set the setgid bit of files whose group is not the agent's
}

// nodeAgentSecurity runs the agent as root with only nodeAgentCapabilities (all of them in the
// baseline standard's default set), no privilege escalation and a read-only root file system. It
// is not privileged: HostToContainer propagation of the pods directory needs no privilege
// (Bidirectional would).
func nodeAgentSecurity(spec *corev1.PodSpec) {
	root, yes, no := int64(0), true, false
	spec.SecurityContext = &corev1.PodSecurityContext{SeccompProfile: seccompRuntimeDefault}
	spec.Containers[0].SecurityContext = &corev1.SecurityContext{
		RunAsUser: &root, RunAsGroup: &root, AllowPrivilegeEscalation: &no, ReadOnlyRootFilesystem: &yes,
		Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: nodeAgentCapabilities},
	}
}

// credentialRule lets the node-agent read the storage credential Secrets the locations name in
// spec.credential, by name: its generated rules cover only the repository password Secrets.
func credentialRule(names []string) []rbacv1.PolicyRule {
	if len(names) == 0 {
		return nil
	}
	return []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}, ResourceNames: names}}
}
