// Package scheme provides the runtime.Scheme every Ferry program uses: the Kubernetes core
// types plus the velero.io types Ferry serves and the CSI
// snapshot types (snapshot.storage.k8s.io/v1) of the data mover.
package scheme

import (
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	velerov2alpha1 "github.com/ferry-backup/ferry/api/v2alpha1"
)

// New returns a scheme with the Kubernetes built-in types velero.io v1 and v2alpha1, and
// snapshot.storage.k8s.io/v1.
func New() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(velerov1.AddToScheme(s))
	utilruntime.Must(velerov2alpha1.AddToScheme(s))
	utilruntime.Must(snapshotv1.AddToScheme(s))
	return s
}
