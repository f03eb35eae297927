package backup

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferry-backup/ferry/api/shared"
	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/repoaccess"
)

// Labels Velero's server puts on the BackupRepository of a (location, volume namespace) and
// finds it by.
const (
	LabelVolumeNamespace = "velero.io/volume-namespace"
	LabelRepositoryType  = "velero.io/repository-type"
)

// NamespaceRepositoryName is the name Ferry gives the BackupRepository of a volume namespace at
// a location in Velero's layout: the prefix Velero 1.18 generates its names from
// (<namespace>-<location>-kopia-<random>), without the random part, so that a start repeated
// after a restart makes nothing twice. Both servers find the object by its spec and labels,
// whatever its name.
func NamespaceRepositoryName(namespace, bsl string) string {
	return fmt.Sprintf("%s-%s-%s", namespace, bsl, velerov1.RepositoryTypeKopia)
}

// namespaces returns, sorted and once each, the namespaces of the selected volumes.
func (s selection) namespaces() []string {
	var namespaces []string
	for _, v := range s.PodVolumes {
		namespaces = append(namespaces, v.Pod.Namespace)
	}
	for _, c := range s.Claims {
		namespaces = append(namespaces, c.PVC.Namespace)
	}
	slices.Sort(namespaces)
	return slices.Compact(namespaces)
}

// readyRepositories ensures the BackupRepositories the backup writes to and selects its
// volumes; wait is non-nil while a repository is not Ready yet. The location's repository
// holds the backup's record, and in Ferry's layout its volumes; in Velero's layout each volume
// namespace has its own repository besides.
func (r *Reconciler) readyRepositories(ctx context.Context, b *velerov1.Backup, bsl *velerov1.BackupStorageLocation) (sel selection, wait *ctrl.Result, err error) {
	br, err := r.ensureRepository(ctx, b, bsl)
	if err != nil {
		return sel, nil, err
	}
	if br.Status.Phase != velerov1.BackupRepositoryPhaseReady {
		res, err := r.waitForRepository(ctx, b, br)
		return sel, &res, err
	}
	if sel, err = r.selectVolumes(ctx, b); err != nil {
		return sel, nil, err
	}
	repos, err := r.ensureNamespaceRepositories(ctx, b, bsl, sel.namespaces())
	if err != nil {
		return sel, nil, err
	}
	for _, br := range repos {
		if br.Status.Phase != velerov1.BackupRepositoryPhaseReady {
			res, err := r.waitForRepository(ctx, b, br)
			return sel, &res, err
		}
	}
	return sel, nil, nil
}

// ensureNamespaceRepositories gets or creates, for each of namespaces whose volumes have
// Velero's layout at the location, the BackupRepository of that (location, namespace), as
// Velero's server does before it backs up a namespace's volumes, and returns them. In Ferry's
// layout it returns none: the location's repository holds every namespace.
func (r *Reconciler) ensureNamespaceRepositories(ctx context.Context, b *velerov1.Backup, bsl *velerov1.BackupStorageLocation,
	namespaces []string) ([]*velerov1.BackupRepository, error) {
	var velero []string
	for _, ns := range namespaces {
		layout, err := repoaccess.LayoutOf(ctx, r.Client, bsl, ns)
		if err != nil {
			return nil, err
		}
		if layout == repoaccess.LayoutVelero {
			velero = append(velero, ns)
		}
	}
	if len(velero) == 0 {
		return nil, nil
	}
	list := &velerov1.BackupRepositoryList{}
	if err := r.Client.List(ctx, list, client.InNamespace(b.Namespace)); err != nil {
		return nil, fmt.Errorf("list the backup repositories of location %s: %w", bsl.Name, err)
	}
	var repos []*velerov1.BackupRepository
	for _, ns := range velero {
		br, err := r.ensureNamespaceRepository(ctx, list.Items, b.Namespace, bsl.Name, ns)
		if err != nil {
			return nil, err
		}
		repos = append(repos, br)
	}
	return repos, nil
}

// ensureNamespaceRepository returns the Kopia BackupRepository of (location, namespace) among
// existing, or creates it in the install namespace.
func (r *Reconciler) ensureNamespaceRepository(ctx context.Context, existing []velerov1.BackupRepository, install, bsl, ns string) (*velerov1.BackupRepository, error) {
	for i := range existing {
		s := existing[i].Spec
		if s.BackupStorageLocation == bsl && s.VolumeNamespace == ns &&
			(s.RepositoryType == velerov1.RepositoryTypeKopia || s.RepositoryType == "") {
			return &existing[i], nil
		}
	}
	br := &velerov1.BackupRepository{
		ObjectMeta: metav1.ObjectMeta{Namespace: install, Name: NamespaceRepositoryName(ns, bsl),
			Labels: map[string]string{velerov1.LabelStorageLocation: labelValue(bsl), LabelVolumeNamespace: labelValue(ns),
				LabelRepositoryType: velerov1.RepositoryTypeKopia}},
		Spec: velerov1.BackupRepositorySpec{BackupStorageLocation: bsl, VolumeNamespace: ns,
			RepositoryType: velerov1.RepositoryTypeKopia, MaintenanceFrequency: shared.Duration{Duration: time.Hour}},
	}
	if err := r.Client.Create(ctx, br); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("create BackupRepository %s: %w", br.Name, err)
	}
	return br, nil // made now or meanwhile: not Ready yet; its phase is read at the next look
}

// labelValue is name as Velero writes it into a label: a name longer than a label value may be
// keeps its first 57 characters and the first 6 hex digits of its SHA-256.
func labelValue(name string) string {
	if len(name) <= validation.DNS1035LabelMaxLength {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return name[:validation.DNS1035LabelMaxLength-6] + hex.EncodeToString(sum[:])[:6]
}
