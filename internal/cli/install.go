package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
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
	// CRDsOnly installs the CRDs and the namespace only (e.g. next to Velero's own server).
	CRDsOnly bool
	// DryRun prints the objects as YAML instead of installing them.
	DryRun bool
}

// DefaultImage is the image `ferry install` deploys unless told otherwise.
var DefaultImage = "ghcr.io/ferry-backup/ferry:" + buildinfo.String()

func newInstallCommand(o *Options) *cobra.Command {
	io := &installOptions{Options: o, Wait: time.Minute, Image: DefaultImage}
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Install Ferry into the cluster: CRDs, namespace, RBAC, ferry-server and the node-agent DaemonSet",
		Long: "Creates or updates the velero.io CRDs Ferry serves, the install namespace, a ServiceAccount and\n" +
			"the generated least-privilege RBAC for each component, the ferry-server Deployment and the\n" +
			"ferry-node-agent DaemonSet (kubelet pods directory at /host_pods), then waits until the API server\n" +
			"serves the CRDs. Safe to run again. ferry-server creates the repository password Secret\n" +
			"velero-repo-credentials with a random password if it does not exist: back it up.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := io.validate(); err != nil {
				return err
			}
			if io.DryRun {
				return io.print()
			}
			c, err := io.client()
			if err != nil {
				return err
			}
			return io.run(cmd.Context(), c)
		},
	}
	cmd.Flags().DurationVar(&io.Wait, "wait", io.Wait, "how long to wait for the CRDs to be established")
	cmd.Flags().StringVar(&io.Image, "image", io.Image, "container image with the ferry-server and ferry-node-agent binaries")
	cmd.Flags().StringVar(&io.PullPolicy, "image-pull-policy", "",
		"imagePullPolicy of Ferry's containers: Always, IfNotPresent or Never (an image imported into the nodes' runtime); default: Kubernetes' own")
	cmd.Flags().BoolVar(&io.CRDsOnly, "crds-only", false, "install only the CRDs and the namespace")
	cmd.Flags().BoolVar(&io.DryRun, "dry-run", false, "print the objects as YAML instead of installing them")
	return cmd
}

func (o *installOptions) validate() error {
	switch corev1.PullPolicy(o.PullPolicy) {
	case "", corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
		return nil
	}
	return fmt.Errorf("--image-pull-policy %q: want Always, IfNotPresent or Never", o.PullPolicy)
}

// objects returns everything to install, CRDs first.
func (o *installOptions) objects() ([]client.Object, error) {
	crds, err := crd.All()
	if err != nil {
		return nil, err
	}
	objs := []client.Object{&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: o.Namespace}}}
	for _, c := range crds {
		objs = append(objs, c)
	}
	if o.CRDsOnly {
		return objs, nil
	}
	rest, err := manifests(o.Namespace, o.Image, corev1.PullPolicy(o.PullPolicy))
	return append(objs, rest...), err
}

// print writes the objects as a multi-document YAML stream.
func (o *installOptions) print() error {
	objs, err := o.objects()
	if err != nil {
		return err
	}
	s := installScheme()
	for _, obj := range objs {
		gvk, err := apiutil.GVKForObject(obj, s)
		if err != nil {
			return err
		}
		obj.GetObjectKind().SetGroupVersionKind(gvk)
		data, err := yaml.Marshal(obj)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(o.Out, "---\n%s", data); err != nil {
			return err
		}
	}
	return nil
}

func (o *installOptions) run(ctx context.Context, c client.Client) error {
	objs, err := o.objects()
	if err != nil {
		return err
	}
	for _, want := range objs {
		if err := createOrUpdate(ctx, c, want); err != nil {
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
	if !o.CRDsOnly {
		fmt.Fprintf(o.Out, "ferry-server and the ferry-node-agent DaemonSet installed with image %s\n", o.Image)
	}
	return nil
}

// createOrUpdate makes the object as wanted; what the server keeps (status, defaults of fields
// left empty) stays.
func createOrUpdate(ctx context.Context, c client.Client, want client.Object) error {
	have := want.DeepCopyObject().(client.Object)
	err := c.Get(ctx, client.ObjectKeyFromObject(want), have)
	if apierrors.IsNotFound(err) {
		return c.Create(ctx, want.DeepCopyObject().(client.Object))
	}
	if err != nil {
		return err
	}
	if _, ok := want.(*corev1.Namespace); ok {
		return nil
	}
	update := want.DeepCopyObject().(client.Object)
	update.SetResourceVersion(have.GetResourceVersion())
	return c.Update(ctx, update)
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
