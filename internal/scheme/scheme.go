// Package scheme provides the runtime.Scheme every Ferry program uses: the Kubernetes core
// types plus the velero.io types Ferry serves.
package scheme

import (
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	velerov2alpha1 "github.com/ferry-backup/ferry/api/v2alpha1"
)

// New returns a scheme with the Kubernetes built-in types and velero.io v1 and v2alpha1.
func New() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(velerov1.AddToScheme(s))
	utilruntime.Must(velerov2alpha1.AddToScheme(s))
	return s
}
