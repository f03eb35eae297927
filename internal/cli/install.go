package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/ferry-backup/ferry/config/crd"
	"github.com/ferry-backup/ferry/internal/buildinfo"
)

// installOptions configure `ferry install`.
type installOptions struct {
	*Options
	// Wait bounds how long to wait for the CRDs to be served.
	Wait time.Duration
	// Image is the container image with the ferry-server and ferry-node-agent binaries.
	Image string
	// PullPolicy is the containers' imagePullPolicy; empty leaves Kubernetes' default.
	PullPolicy string
	// ServerRequests and NodeAgentRequests are the containers' resource requests, resource=quantity;
	// ServerLimits and NodeAgentLimits their limits.
	ServerRequests, NodeAgentRequests, ServerLimits, NodeAgentLimits map[string]string
	// WorkDirSizeLimit bounds each pod's work directory (an emptyDir); "0" leaves it unbounded.
	WorkDirSizeLimit string
	// CredentialSecrets are the storage credential Secrets the node-agent may read.
	CredentialSecrets []string
	// CRDsOnly installs the CRDs and the namespace only (e.g. next to Velero's own server).
	CRDsOnly bool
	// InPlaceOfVelero puts Ferry's node-agent into Velero's node-agent DaemonSet and installs
	// nothing else but the rules it needs (inplace.go).
	InPlaceOfVelero bool
	// DryRun prints the objects as YAML instead of installing them.
	DryRun bool
}

// DefaultImage is the image `ferry install` deploys unless told otherwise.
var DefaultImage = "ghcr.io/ferry-backup/ferry:" + buildinfo.String()

func newInstallCommand(o *Options) *cobra.Command {
	io := &installOptions{Options: o, Wait: time.Minute, Image: DefaultImage,
		ServerRequests: defaultServerRequests, NodeAgentRequests: defaultNodeAgentRequests,
		ServerLimits: defaultServerLimits, NodeAgentLimits: defaultNodeAgentLimits,
		WorkDirSizeLimit: defaultWorkDirSizeLimit, CredentialSecrets: []string{"cloud-credentials"}}
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Install Ferry into the cluster: CRDs, namespace, RBAC, ferry-server and the node-agent DaemonSet",
		Long: "Applies (server-side apply, field manager " + fieldManager + ") the velero.io CRDs Ferry serves, the install\n" +
			"namespace (labelled for Pod Security Admission: enforce privileged, which the node-agent's hostPath\n" +
			"needs; audit restricted), a ServiceAccount and the generated least-privilege RBAC for each\n" +
			"component (the node-agent reads only the password Secrets and those --credential-secrets names), the\n" +
			"ferry-server Deployment and the node-agent DaemonSet (kubelet pods directory at /host_pods),\n" +
			"then waits until the API server serves the CRDs. Safe to run again: a run that changes nothing\n" +
			"restarts nothing, and fields install does not set (annotations, a nodeSelector, tolerations, an\n" +
			"extra env var) are kept. ferry-server creates the repository password Secret\n" +
			"velero-repo-credentials with a random password if it does not exist: back it up.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if io.InPlaceOfVelero {
				return io.runInPlace(cmd.Context())
			}
			objs, err := io.objects()
			if err != nil {
				return err
			}
			if io.DryRun {
				return io.print(objs)
			}
			c, err := io.client()
			if err != nil {
				return err
			}
			return io.run(cmd.Context(), c, objs)
		},
	}
	cmd.Flags().DurationVar(&io.Wait, "wait", io.Wait, "how long to wait for the CRDs to be established (with --in-place-of-velero: for the node-agent pods to be replaced; 0: do not wait)")
	cmd.Flags().StringVar(&io.Image, "image", io.Image, "container image with the ferry-server and ferry-node-agent binaries")
	cmd.Flags().StringVar(&io.PullPolicy, "image-pull-policy", "",
		"imagePullPolicy of Ferry's containers: Always, IfNotPresent or Never (an image imported into the nodes' runtime); default: Kubernetes' own")
	cmd.Flags().StringToStringVar(&io.ServerRequests, "server-requests", io.ServerRequests,
		"resource requests of ferry-server (cpu, memory, ephemeral-storage)")
	cmd.Flags().StringToStringVar(&io.NodeAgentRequests, "node-agent-requests", io.NodeAgentRequests,
		"resource requests of each ferry-node-agent (cpu, memory, ephemeral-storage)")
	cmd.Flags().StringToStringVar(&io.ServerLimits, "server-limits", io.ServerLimits,
		"resource limits of ferry-server (cpu, memory, ephemeral-storage); no CPU limit by default")
	cmd.Flags().StringToStringVar(&io.NodeAgentLimits, "node-agent-limits", io.NodeAgentLimits,
		"resource limits of each ferry-node-agent (cpu, memory, ephemeral-storage); no CPU limit by default")
	cmd.Flags().StringVar(&io.WorkDirSizeLimit, "work-dir-size-limit", io.WorkDirSizeLimit,
		"size limit of each pod's work directory (an emptyDir with Kopia's caches; a pod above it is evicted); 0: none")
	cmd.Flags().StringSliceVar(&io.CredentialSecrets, "credential-secrets", io.CredentialSecrets,
		"Secrets of the install namespace that BackupStorageLocations name in spec.credential: the only ones the node-agent may read besides the repository password")
	cmd.Flags().BoolVar(&io.CRDsOnly, "crds-only", false, "install only the CRDs and the namespace")
	cmd.Flags().BoolVar(&io.InPlaceOfVelero, "in-place-of-velero", false,
		"run Ferry's node-agent in Velero's node-agent DaemonSet of the namespace (-n, Velero's), keeping Velero's server, CRDs, locations\n"+
			"and Secrets; only the DaemonSet's pod template changes (Velero's is kept; `ferry uninstall` puts it back)")
	cmd.MarkFlagsMutuallyExclusive("crds-only", "in-place-of-velero")
	cmd.Flags().BoolVar(&io.DryRun, "dry-run", false, "print the objects as YAML instead of installing them")
	return cmd
}

// workloads checks the flags and returns the settings of the Deployment and the DaemonSet.
func (o *installOptions) workloads() (workloads, error) {
	w := workloads{Namespace: o.Namespace, Image: o.Image, PullPolicy: corev1.PullPolicy(o.PullPolicy)}
	switch w.PullPolicy {
	case "", corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		return w, fmt.Errorf("--image-pull-policy %q: want Always, IfNotPresent or Never", o.PullPolicy)
	}
	var err error
	if w.ServerResources, err = parseRequirements("server", o.ServerRequests, o.ServerLimits); err != nil {
		return w, err
	}
	if w.NodeAgentResources, err = parseRequirements("node-agent", o.NodeAgentRequests, o.NodeAgentLimits); err != nil {
		return w, err
	}
	if size, err := resource.ParseQuantity(o.WorkDirSizeLimit); err != nil || size.Sign() < 0 {
		return w, fmt.Errorf("--work-dir-size-limit %q: want a size such as 4Gi, or 0 for none", o.WorkDirSizeLimit)
	} else if size.Sign() > 0 {
		w.WorkDirSizeLimit = &size
	}
	for _, name := range o.CredentialSecrets {
		if problems := validation.IsDNS1123Subdomain(name); len(problems) > 0 {
			return w, fmt.Errorf("--credential-secrets: %q is not a Secret name: %s", name, strings.Join(problems, "; "))
		}
	}
	w.CredentialSecrets = o.CredentialSecrets
	return w, nil
}

// objects returns everything to install, CRDs first.
func (o *installOptions) objects() ([]client.Object, error) {
	w, err := o.workloads()
	if err != nil {
		return nil, err
	}
	crds, err := crdObjects()
	if err != nil {
		return nil, err
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: o.Namespace, Labels: podSecurityLabels}}
	objs := append([]client.Object{ns}, crds...)
	if o.CRDsOnly {
		return objs, nil
	}
	rest, err := w.manifests()
	return append(objs, rest...), err
}

// print writes the objects as a multi-document YAML stream, as install applies them.
func (o *installOptions) print(objs []client.Object) error {
	s := installScheme()
	for _, obj := range objs {
		u, err := applyConfiguration(obj, s)
		if err != nil {
			return err
		}
		data, err := yaml.Marshal(u.Object)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(o.Out, "---\n%s", data); err != nil {
			return err
		}
	}
	return nil
}

func (o *installOptions) run(ctx context.Context, c client.Client, objs []client.Object) error {
	if err := o.notVelerosNodeAgent(ctx, c); err != nil {
		return err
	}
	for _, want := range objs {
		if err := apply(ctx, c, want); err != nil {
			return fmt.Errorf("install %s: %w", describe(want), err)
		}
	}
	for _, obj := range objs {
		if crd, ok := obj.(*apiextensionsv1.CustomResourceDefinition); ok {
			if err := waitEstablished(ctx, c, crd.Name, o.Wait); err != nil {
				return err
			}
			fmt.Fprintf(o.Out, "CustomResourceDefinition %s established\n", crd.Name)
		}
	}
	fmt.Fprintf(o.Out, "namespace %s ready\n", o.Namespace)
	if o.CRDsOnly {
		return nil
	}
	// An older Ferry's agent would run beside the new one on every node.
	legacy := legacyNodeAgent(o.Namespace)
	err := c.Delete(ctx, legacy, client.PropagationPolicy(metav1.DeletePropagationBackground))
	switch {
	case err == nil:
		fmt.Fprintf(o.Out, "DaemonSet %s of an older Ferry deleted\n", legacyNodeAgentDaemonSetName)
	case !apierrors.IsNotFound(err):
		return fmt.Errorf("delete the DaemonSet %s of an older Ferry: %w", legacyNodeAgentDaemonSetName, err)
	}
	fmt.Fprintf(o.Out, "ferry-server and the %s DaemonSet installed with image %s\n", nodeAgentDaemonSetName, o.Image)
	return nil
}

// crdObjects returns the velero.io CRDs Ferry installs.
func crdObjects() ([]client.Object, error) {
	crds, err := crd.All()
	if err != nil {
		return nil, err
	}
	objs := make([]client.Object, len(crds))
	for i, c := range crds {
		objs[i] = c
	}
	return objs, nil
}

func waitEstablished(ctx context.Context, c client.Client, name string, timeout time.Duration) error {
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		have := &apiextensionsv1.CustomResourceDefinition{}
		if err := c.Get(ctx, client.ObjectKey{Name: name}, have); err != nil {
			return false, err
		}
		for _, cond := range have.Status.Conditions {
			if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("CRD %s not established within %s: %w", name, timeout, err)
	}
	return nil
}
