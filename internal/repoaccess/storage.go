package repoaccess

import (
	"context"
	"fmt"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/repository"
)

// Storage is what reaches a location's storage outside Kopia: the restic program reads Velero's
// restic repositories with it.
type Storage struct {
	// Location holds the location's settings, CA bundle and credentials (as LocationOf).
	Location repository.Location
	// Passwords are the repository passwords that may be in force: the Secret's first, then
	// those the server last applied (see openNew).
	Passwords []string
	// ReadOnly is the location's access mode.
	ReadOnly bool
}

// StorageOf returns the storage of the named location.
func (a *Access) StorageOf(ctx context.Context, bslName string) (Storage, error) {
	bsl := &velerov1.BackupStorageLocation{}
	if err := a.opts.Client.Get(ctx, client.ObjectKey{Namespace: a.opts.Namespace, Name: bslName}, bsl); err != nil {
		if apierrors.IsNotFound(err) {
			return Storage{}, fmt.Errorf("backup storage location %q not found in namespace %s", bslName, a.opts.Namespace)
		}
		return Storage{}, fmt.Errorf("read backup storage location %s: %w", bslName, err)
	}
	loc, err := a.LocationOf(ctx, bsl)
	if err != nil {
		return Storage{}, err
	}
	password, err := a.secretKey(ctx, PasswordSecret, PasswordKey)
	if err != nil {
		return Storage{}, fmt.Errorf("repository password: %w", err)
	}
	st := Storage{Location: loc, Passwords: []string{string(password)},
		ReadOnly: bsl.Spec.AccessMode == velerov1.BackupStorageLocationAccessModeReadOnly}
	for _, key := range []string{PasswordKey, LocationPasswordKey(bslName)} {
		if other, err := a.secretKey(ctx, AppliedPasswordSecret, key); err == nil && !slices.Contains(st.Passwords, string(other)) {
			st.Passwords = append(st.Passwords, string(other))
		}
	}
	return st, nil
}
