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

	"github.com/ferry-backup/ferry/config/crd"
)

// installOptions configure `ferry install`.
type installOptions struct {
	*Options
	// Wait bounds how long to wait for the CRDs to be served.
	Wait time.Duration
}

func newInstallCommand(o *Options) *cobra.Command {
	io := &installOptions{Options: o, Wait: time.Minute}
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Install Ferry's CustomResourceDefinitions and namespace into the cluster",
		Long: "Creates or updates the velero.io CRDs Ferry serves and the install namespace, then waits\n" +
			"until the API server serves the CRDs. Safe to run again.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := io.client()
			if err != nil {
				return err
			}
			return io.run(cmd.Context(), c)
		},
	}
	cmd.Flags().DurationVar(&io.Wait, "wait", io.Wait, "how long to wait for the CRDs to be established")
	return cmd
}

func (o *installOptions) run(ctx context.Context, c client.Client) error {
	crds, err := crd.All()
	if err != nil {
		return err
	}
	for _, want := range crds {
		if err := createOrUpdate(ctx, c, want); err != nil {
			return fmt.Errorf("install CRD %s: %w", want.Name, err)
		}
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: o.Namespace}}
	if err := c.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", o.Namespace, err)
	}
	for _, want := range crds {
		if err := waitEstablished(ctx, c, want.Name, o.Wait); err != nil {
			return err
		}
		fmt.Fprintf(o.Out, "CustomResourceDefinition %s established\n", want.Name)
	}
	fmt.Fprintf(o.Out, "namespace %s ready\n", o.Namespace)
	return nil
}

func createOrUpdate(ctx context.Context, c client.Client, want *apiextensionsv1.CustomResourceDefinition) error {
	have := &apiextensionsv1.CustomResourceDefinition{}
	err := c.Get(ctx, client.ObjectKeyFromObject(want), have)
	if apierrors.IsNotFound(err) {
		return c.Create(ctx, want.DeepCopy())
	}
	if err != nil {
		return err
	}
	have.Spec = want.Spec
	have.Labels, have.Annotations = want.Labels, want.Annotations
	return c.Update(ctx, have)
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
