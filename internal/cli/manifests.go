package cli

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferry-backup/ferry/config/rbac"
)

// Component names, also the names of their ServiceAccounts and roles.
const (
	serverName    = "ferry-server"
	nodeAgentName = "ferry-node-agent"
	// moverName is the ServiceAccount of the data mover pods the node-agent starts.
	moverName = "ferry-datamover"
	// nodeAgentDaemonSetName is the name Velero's server looks the node-agent up by; its pods
	// carry role=node-agent and name=node-agent, as Velero's do.
	nodeAgentDaemonSetName = "node-agent"
	// legacyNodeAgentDaemonSetName is the DaemonSet of Ferry before it took Velero's name:
	// install and uninstall delete it, so no node runs two agents after an upgrade.
	legacyNodeAgentDaemonSetName = "ferry-node-agent"
)

// workloads are the settings of what `ferry install` creates besides the CRDs and the namespace.
type workloads struct {
	Namespace string
	// Image has the ferry-server and ferry-node-agent binaries.
	Image string
	// PullPolicy is the containers' imagePullPolicy; empty leaves Kubernetes' default.
	PullPolicy corev1.PullPolicy
	// ServerResources and NodeAgentResources are the containers' requests and limits.
	ServerResources, NodeAgentResources corev1.ResourceRequirements
	// WorkDirSizeLimit bounds the emptyDir with Kopia's caches and temporary files; nil: no bound.
	WorkDirSizeLimit *resource.Quantity
	// CredentialSecrets are the Secrets of the install namespace the node-agent may read besides
	// the repository password: the storage credentials BackupStorageLocations name in
	// spec.credential.
	CredentialSecrets []string
}

// Default requests, from what the programs used after real work: ferry-server ~254 MB resident,
// the node-agent ~325 MB while it uploads. The memory limits leave room for the peaks (the
// node-agent reached ~750 MB on 235k small files) and stop a runaway before it takes the node;
// there is no CPU limit: throttling only makes a backup slower.
var (
	defaultServerRequests    = map[string]string{"cpu": "100m", "memory": "256Mi"}
	defaultNodeAgentRequests = map[string]string{"cpu": "250m", "memory": "384Mi"}
	defaultServerLimits      = map[string]string{"memory": "1Gi"}
	defaultNodeAgentLimits   = map[string]string{"memory": "2Gi"}
)

// defaultWorkDirSizeLimit bounds the work directory: each location a process uses gets Kopia
// caches of 256 MiB (contents) and 512 MiB (metadata) plus its index cache, about 1 GiB, and
// full maintenance writes temporary files; 4Gi covers three locations.
const defaultWorkDirSizeLimit = "4Gi"

// workDir is where both programs keep Kopia's connections and caches, and their temporary files.
const workDir = "/var/cache/ferry"

// manifests returns, per component, a ServiceAccount and its generated rules bound cluster-wide
// and in the namespace, then the ferry-server Deployment and the node-agent DaemonSet.
func (w workloads) manifests() ([]client.Object, error) {
	objs, err := w.access(false)
	if err != nil {
		return nil, err
	}
	server, agent := serverDeployment(w.Namespace, w.Image), w.nodeAgent()
	w.configure(&server.Spec.Template.Spec, w.ServerResources)
	return append(objs, server, agent), nil
}

// access returns the ServiceAccount and generated rules of each component. In place of Velero's
// node-agent (underVelero) there is no ferry-server, and the node-agent may also write status
// through the objects, as Velero's CRDs have no status subresource.
func (w workloads) access(underVelero bool) ([]client.Object, error) {
	var objs []client.Object
	for _, c := range []struct {
		name, rules string
		extra       []rbacv1.PolicyRule
	}{{serverName, "server", nil}, {nodeAgentName, "node-agent", credentialRule(w.CredentialSecrets)},
		{moverName, "datamover", credentialRule(w.CredentialSecrets)}} {
		if underVelero && c.name == serverName {
			continue
		}
		rules, err := rbac.For(c.rules)
		if err != nil {
			return nil, err
		}
		if underVelero && c.name == nodeAgentName {
			status, err := rbac.For("velero-crds")
			if err != nil {
				return nil, err
			}
			rules.Namespace = append(rules.Namespace, status.Namespace...)
		}
		rules.Namespace = append(rules.Namespace, c.extra...)
		objs = append(objs, access(w.Namespace, c.name, rules)...)
	}
	return objs, nil
}

// nodeAgent returns the node-agent DaemonSet with the install's image, pull policy, resources
// and work directory limit.
func (w workloads) nodeAgent() *appsv1.DaemonSet {
	agent := nodeAgentDaemonSet(w.Namespace, w.Image)
	w.configure(&agent.Spec.Template.Spec, w.NodeAgentResources)
	// The node-agent starts the data mover pods from its own image, with its pull policy.
	c := &agent.Spec.Template.Spec.Containers[0]
	c.Env = append(c.Env, corev1.EnvVar{Name: "FERRY_IMAGE", Value: w.Image},
		corev1.EnvVar{Name: "FERRY_IMAGE_PULL_POLICY", Value: string(w.PullPolicy)})
	return agent
}

func (w workloads) configure(pod *corev1.PodSpec, resources corev1.ResourceRequirements) {
	pod.Containers[0].ImagePullPolicy = w.PullPolicy
	pod.Containers[0].Resources = resources
	pod.Volumes[0].EmptyDir.SizeLimit = w.WorkDirSizeLimit
}

// parseResources reads a flag's resource=quantity pairs, e.g. cpu=100m and memory=256Mi.
func parseResources(flag string, pairs map[string]string) (corev1.ResourceList, error) {
	if len(pairs) == 0 {
		return nil, nil
	}
	list := corev1.ResourceList{}
	for name, value := range pairs {
		switch corev1.ResourceName(name) {
		case corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceEphemeralStorage:
		default:
			return nil, fmt.Errorf("--%s: resource %q: want cpu, memory or ephemeral-storage", flag, name)
		}
		q, err := resource.ParseQuantity(value)
		if err != nil {
			return nil, fmt.Errorf("--%s: %s=%q: %w", flag, name, value, err)
		}
		list[corev1.ResourceName(name)] = q
	}
	return list, nil
}

// parseRequirements reads the requests and limits flags of one component. A limit of 0 means
// none (e.g. memory=0); a limit below its request is refused here rather than by the API server.
func parseRequirements(component string, requests, limits map[string]string) (corev1.ResourceRequirements, error) {
	var r corev1.ResourceRequirements
	var err error
	if r.Requests, err = parseResources(component+"-requests", requests); err != nil {
		return r, err
	}
	if r.Limits, err = parseResources(component+"-limits", limits); err != nil {
		return r, err
	}
	for name, limit := range r.Limits {
		if limit.IsZero() {
			delete(r.Limits, name)
		} else if request, ok := r.Requests[name]; ok && limit.Cmp(request) < 0 {
			return r, fmt.Errorf("--%s-limits: %s=%s is below --%s-requests %s=%s", component, name, limit.String(), component, name, request.String())
		}
	}
	if len(r.Limits) == 0 {
		r.Limits = nil
	}
	return r, nil
}

func access(namespace, name string, rules rbac.Rules) []client.Object {
	labels := map[string]string{"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "ferry"}
	meta := metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: labels}
	clusterMeta := metav1.ObjectMeta{Name: name + "-" + namespace, Labels: labels}
	subject := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: namespace}}
	return []client.Object{
		&corev1.ServiceAccount{ObjectMeta: meta},
		&rbacv1.ClusterRole{ObjectMeta: clusterMeta, Rules: rules.Cluster},
		&rbacv1.ClusterRoleBinding{ObjectMeta: clusterMeta, Subjects: subject,
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: clusterMeta.Name}},
		&rbacv1.Role{ObjectMeta: meta, Rules: rules.Namespace},
		&rbacv1.RoleBinding{ObjectMeta: meta, Subjects: subject,
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name}},
	}
}

func podSpec(name, image string, args []string) corev1.PodSpec {
	return corev1.PodSpec{
		ServiceAccountName: name,
		Containers: []corev1.Container{{
			Name: name, Image: image, Command: []string{"/" + name}, Args: args,
			Ports: []corev1.ContainerPort{{Name: "metrics", ContainerPort: 8085}, {Name: "health", ContainerPort: 8081}},
			// Lenient: a node busy with a backup answers slowly (on a 2-core node the agent's
			// probe went unanswered for 40 s while it uploaded and a new ferry-server started),
			// and a liveness kill would restart the very operations that keep it busy. A hung
			// process is still restarted, after a minute.
			LivenessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: "/healthz", Port: intstrPort("health")}}, TimeoutSeconds: 5, PeriodSeconds: 10, FailureThreshold: 6},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: "/readyz", Port: intstrPort("health")}}, PeriodSeconds: 2, TimeoutSeconds: 5},
			// The root file system is read-only: temporary files (Kopia's full maintenance
			// writes some) go to the work volume too, under its size limit.
			Env:          []corev1.EnvVar{{Name: "TMPDIR", Value: workDir}},
			VolumeMounts: []corev1.VolumeMount{{Name: "work", MountPath: workDir}},
		}},
		Volumes: []corev1.Volume{{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
	}
}

func serverDeployment(namespace, image string) *appsv1.Deployment {
	labels := map[string]string{"app.kubernetes.io/name": serverName}
	spec := podSpec(serverName, image, []string{"--namespace=" + namespace, "--work-dir=" + workDir})
	serverSecurity(&spec)
	one := int32(1)
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: serverName, Labels: labels},
		Spec: appsv1.DeploymentSpec{Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: spec}},
	}
}

// nodeAgentDaemonSet runs the agent on every node, as root with a few capabilities (it reads and
// writes every file of the volumes), with the kubelet pods directory at /host_pods (changes made
// on the host, such as new volume mounts, propagate into the pod) and its node name from the
// downward API.
func nodeAgentDaemonSet(namespace, image string) *appsv1.DaemonSet {
	selector := map[string]string{"app.kubernetes.io/name": nodeAgentName, "name": "node-agent"}
	labels := map[string]string{"app.kubernetes.io/name": nodeAgentName, "name": "node-agent", "role": "node-agent"}
	spec := podSpec(nodeAgentName, image, []string{"--namespace=" + namespace, "--work-dir=" + workDir, "--host-pods-root=/host_pods"})
	nodeAgentSecurity(&spec)
	propagation := corev1.MountPropagationHostToContainer
	c := &spec.Containers[0]
	// POD_NAME: the agent reads its own pod for the credential files its mover pods get too.
	c.Env = append([]corev1.EnvVar{{Name: "NODE_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}},
		{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}}, c.Env...)
	c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: "host-pods", MountPath: "/host_pods", MountPropagation: &propagation})
	spec.Volumes = append(spec.Volumes, corev1.Volume{Name: "host-pods", VolumeSource: corev1.VolumeSource{
		HostPath: &corev1.HostPathVolumeSource{Path: "/var/lib/kubelet/pods"}}})
	return &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: nodeAgentDaemonSetName, Labels: labels},
		Spec: appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: selector},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: spec}},
	}
}

// legacyNodeAgent is the DaemonSet an older Ferry installed as ferry-node-agent.
func legacyNodeAgent(namespace string) *appsv1.DaemonSet {
	return &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: legacyNodeAgentDaemonSetName}}
}

func describe(obj client.Object) string {
	return fmt.Sprintf("%T %s", obj, client.ObjectKeyFromObject(obj))
}

func intstrPort(name string) intstr.IntOrString { return intstr.FromString(name) }
