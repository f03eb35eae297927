package repoaccess

import (
	"context"
	"fmt"
	"sort"

	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
)

// A location's repositories have one of two layouts:
//
//   - Ferry's: one repository per location, at <bucket>/<prefix>/, written with Ferry's
//     identities and source paths;
//   - Velero's: one repository per location and volume namespace, at
//     <bucket>/<prefix>/kopia/<namespace>/, each recorded by a BackupRepository with
//     spec.volumeNamespace, written as Velero 1.18 writes it (identity default@default,
//     Velero's source paths and tags), so that Velero and Ferry can replace each other.
//
// The annotation LayoutAnnotation on the BackupStorageLocation chooses. Without it, a volume
// namespace has Velero's layout when a Kopia BackupRepository of the location records that
// namespace (Velero's server creates one before the first backup of a namespace; Ferry's server
// creates one per location without a namespace), so an installation Velero set up keeps its
// repositories untouched. The annotation is on the object, not in spec.config: Velero's object
// store plugins refuse config keys they do not know.
const (
	LayoutAnnotation = "ferry.io/repository-layout"
	LayoutFerry      = "ferry"
	LayoutVelero     = "velero"
)

// LayoutOf returns the layout, LayoutVelero or LayoutFerry, of the repository that holds the
// volumes of namespace at the location bsl; c lists the BackupRepositories in bsl's namespace.
// The server asks it to know which BackupRepositories a backup needs and which repositories a
// deletion cleans; the node-agents open what it chooses (OpenFor).
func LayoutOf(ctx context.Context, c client.Reader, bsl *velerov1.BackupStorageLocation, namespace string) (string, error) {
	switch v := bsl.Annotations[LayoutAnnotation]; v {
	case LayoutVelero, LayoutFerry:
		return v, nil
	case "":
	default:
		return "", fmt.Errorf("backup storage location %s: annotation %s is %q, not %q or %q",
			bsl.Name, LayoutAnnotation, v, LayoutVelero, LayoutFerry)
	}
	namespaces, err := veleroNamespaces(ctx, c, bsl.Namespace, bsl.Name)
	if err != nil {
		return "", err
	}
	if i := sort.SearchStrings(namespaces, namespace); i < len(namespaces) && namespaces[i] == namespace {
		return LayoutVelero, nil
	}
	return LayoutFerry, nil
}

// veleroLayout reports whether the volumes of namespace live in the namespace's own repository
// at the location (Velero's layout).
func (a *Access) veleroLayout(ctx context.Context, bsl *velerov1.BackupStorageLocation, namespace string) (bool, error) {
	layout, err := LayoutOf(ctx, a.opts.Client, bsl, namespace)
	return layout == LayoutVelero, err
}

// veleroNamespaces returns, sorted, the volume namespaces the location's Kopia BackupRepositories
// record.
func veleroNamespaces(ctx context.Context, c client.Reader, namespace, bslName string) ([]string, error) {
	list := &velerov1.BackupRepositoryList{}
	if err := c.List(ctx, list, client.InNamespace(namespace)); err != nil {
		return nil, fmt.Errorf("list the backup repositories of location %s: %w", bslName, err)
	}
	var namespaces []string
	for _, br := range list.Items {
		s := br.Spec
		if s.BackupStorageLocation == bslName && s.VolumeNamespace != "" &&
			(s.RepositoryType == velerov1.RepositoryTypeKopia || s.RepositoryType == "") {
			namespaces = append(namespaces, s.VolumeNamespace)
		}
	}
	sort.Strings(namespaces)
	return namespaces, nil
}
