package repository

import (
	"context"
	"fmt"
	"time"

	"github.com/kopia/kopia/repo"
	"github.com/kopia/kopia/repo/blob"
	"github.com/kopia/kopia/repo/maintenance"
	"github.com/kopia/kopia/snapshot/snapshotmaintenance"
)

// Maintenance modes.
const (
	// MaintenanceQuick compacts indexes and metadata; run it often.
	MaintenanceQuick = maintenance.ModeQuick
	// MaintenanceFull also deletes the data no snapshot references; run it daily.
	MaintenanceFull = maintenance.ModeFull
)

// MaintenanceOptions tune one maintenance run.
type MaintenanceOptions struct {
	// Force runs maintenance even when the repository's maintenance owner is not the one Ferry
	// records (maintenance@ferry; default@default in Velero's layout).
	Force bool
	// UnsafeNoSafetyMargins drops Kopia's safety margins, which keep data that concurrent
	// snapshots may still reference for hours. Tests only: never set it in the product.
	UnsafeNoSafetyMargins bool
}

// MaintenanceRecord describes one maintenance run, for BackupRepository.status.recentMaintenance.
type MaintenanceRecord struct {
	Mode      maintenance.Mode
	Start     time.Time
	End       time.Time
	Succeeded bool
	// Message says what the run did (storage before and after) or why it failed.
	Message string
	// StorageBytesBefore and StorageBytesAfter are the sizes of all blobs around the run.
	StorageBytesBefore, StorageBytesAfter int64
}

// Maintain runs quick or full maintenance. A full run holds the repository's exclusive lock.
// The record is filled in on failure too; the error is also returned.
func (r *Repository) Maintain(ctx context.Context, mode maintenance.Mode, opts MaintenanceOptions) (MaintenanceRecord, error) {
	rec := MaintenanceRecord{Mode: mode, Start: time.Now()}
	err := r.maintain(ctx, &rec, opts)
	rec.End = time.Now()
	rec.Succeeded = err == nil
	if err != nil {
		rec.Message = fmt.Sprintf("%s maintenance failed: %v", mode, err)
	}
	return rec, err
}

func (r *Repository) maintain(ctx context.Context, rec *MaintenanceRecord, opts MaintenanceOptions) error {
	if r.ClientOptions().ReadOnly {
		return fmt.Errorf("repository at %s is read-only", r.location)
	}
	if rec.Mode != MaintenanceQuick && rec.Mode != MaintenanceFull {
		return fmt.Errorf("maintenance mode %q is not quick or full", rec.Mode)
	}
	params, err := maintenance.GetParams(ctx, r)
	if err != nil {
		return fmt.Errorf("read maintenance owner: %w", err)
	}
	if owner := r.location.maintenanceOwner(); params.Owner != owner && !opts.Force {
		return fmt.Errorf("maintenance is owned by %q, not %q; force it to take over", params.Owner, owner)
	}
	if rec.Mode == MaintenanceFull {
		held, err := r.lock.acquire(ctx, r.holder, "full maintenance")
		if err != nil {
			return err
		}
		defer held.release()
		return held.explain(r.runMaintenance(held.ctx, rec, opts))
	}
	return r.runMaintenance(ctx, rec, opts)
}

// runMaintenance runs maintenance once the checks passed (and, for a full run, under the lock).
func (r *Repository) runMaintenance(ctx context.Context, rec *MaintenanceRecord, opts MaintenanceOptions) error {
	var err error
	if rec.StorageBytesBefore, err = storageBytes(ctx, r.BlobReader()); err != nil {
		return err
	}
	safety := maintenance.SafetyFull
	if opts.UnsafeNoSafetyMargins {
		safety = maintenance.SafetyNone
	}
	err = repo.DirectWriteSession(ctx, r, repo.WriteSessionOptions{Purpose: "ferry: maintenance"},
		func(ctx context.Context, w repo.DirectRepositoryWriter) error {
			// maintain checked the owner against Ferry's own identity, hence force.
			return snapshotmaintenance.Run(ctx, w, rec.Mode, true, safety)
		})
	if err != nil {
		return err
	}
	if rec.StorageBytesAfter, err = storageBytes(ctx, r.BlobReader()); err != nil {
		return err
	}
	rec.Message = fmt.Sprintf("%s maintenance: storage %s → %s", rec.Mode,
		mib(rec.StorageBytesBefore), mib(rec.StorageBytesAfter))
	return nil
}

// storageBytes sums the sizes of all blobs of the repository.
func storageBytes(ctx context.Context, st blob.Reader) (int64, error) {
	var total int64
	err := st.ListBlobs(ctx, "", func(m blob.Metadata) error {
		total += m.Length
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("list blobs: %w", err)
	}
	return total, nil
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// ChangePassword re-keys the repository: afterwards only newPassword opens it, and every
// snapshot stays readable (the data keys do not change, only the key that wraps them). It holds
// the exclusive lock, so processes opening the repository wait instead of failing.
func (r *Repository) ChangePassword(ctx context.Context, newPassword string) error {
	if newPassword == "" {
		return fmt.Errorf("change password of %s: the new password is empty", r.location)
	}
	held, err := r.lock.acquire(ctx, r.holder, "password change")
	if err != nil {
		return err
	}
	defer held.release()
	if err := r.FormatManager().ChangePassword(held.ctx, newPassword); err != nil {
		return fmt.Errorf("change password of %s: %w", r.location, held.explain(err))
	}
	r.password.set(newPassword)
	return nil
}
