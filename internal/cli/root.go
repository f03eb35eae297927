// Package cli provides the ferry command-line tool. It talks to the API server only and never
// links Kopia: all data work happens in the server, the node-agents and the mover pods.
package cli

import (
	"io"

	"github.com/spf13/cobra"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferry-backup/ferry/internal/scheme"
)

// Options are the settings every command shares.
type Options struct {
	// Kubeconfig is a kubeconfig file; empty means the usual kubectl rules.
	Kubeconfig string
	// Context is the kubeconfig context to use; empty means the current one.
	Context string
	// Namespace is the namespace Ferry is installed in.
	Namespace string
	Out       io.Writer
	// In answers questions such as `ferry backup delete`'s confirmation: the command's input
	// (standard input unless set with SetIn).
	In io.Reader
}

// NewCommand returns the root command writing to out.
func NewCommand(out io.Writer) *cobra.Command {
	o := &Options{Namespace: "velero", Out: out}
	root := &cobra.Command{
		Use:           "ferry",
		Short:         "Back up and restore Kubernetes volumes into Kopia repositories",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(cmd *cobra.Command, _ []string) {
			o.In = cmd.InOrStdin()
		},
	}
	root.SetOut(out)
	root.PersistentFlags().StringVar(&o.Kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
	root.PersistentFlags().StringVar(&o.Context, "context", "", "kubeconfig context to use (default: the current context)")
	root.PersistentFlags().StringVarP(&o.Namespace, "namespace", "n", o.Namespace, "namespace Ferry is installed in")
	root.AddCommand(newVersionCommand(o), newInstallCommand(o), newUninstallCommand(o),
		newBackupCommand(o), newRestoreCommand(o), newScheduleCommand(o), newLocationCommand(o), newRepoCommand(o))
	return root
}

// client connects to the API server with Ferry's scheme.
func (o *Options) client() (client.Client, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = o.Kubeconfig
	overrides := &clientcmd.ConfigOverrides{CurrentContext: o.Context}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides).ClientConfig()
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = 50, 100 // like kubectl: install and uninstall make dozens of calls
	return client.New(cfg, client.Options{Scheme: installScheme()})
}

// installScheme is Ferry's scheme plus the CRD types.
func installScheme() *runtime.Scheme {
	s := scheme.New()
	utilruntime.Must(apiextensionsv1.AddToScheme(s))
	return s
}
