package podvolumerestore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"

	"sigs.k8s.io/controller-runtime/pkg/log"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/restic"
	"github.com/ferry-backup/ferry/internal/uploader"
)

// restoreRestic restores a snapshot Velero's restic uploader made. restic never writes into the
// volume (its own restore follows symlinks the volume's tenant plants in the target): it lists
// the snapshot (the listing checks the password and the snapshot, and gives the size and the
// exact times) and streams it as a tar archive, which Ferry writes beneath the volume's open
// root like any restore (uploader.RestoreArchive). Cancel and timeout end restic with the
// operation's context.
func (r *Reconciler) restoreRestic(ctx context.Context, pvr *velerov1.PodVolumeRestore, dir string) (uploader.ArchiveStats, error) {
	st, err := r.readRestic(ctx, pvr, dir)
	if err != nil {
		err = fmt.Errorf("uploaderType restic: %w", err)
	}
	return st, err
}

func (r *Reconciler) readRestic(ctx context.Context, pvr *velerov1.PodVolumeRestore, dir string) (uploader.ArchiveStats, error) {
	id := pvr.Spec.SnapshotID
	if err := restic.CheckSnapshotID(id); err != nil {
		return uploader.ArchiveStats{}, err
	}
	repo, passwords, err := r.resticRepository(ctx, pvr)
	if err != nil {
		return uploader.ArchiveStats{}, err
	}
	var nodes []restic.Node
	for _, repo.Password = range passwords { // the first that opens the repository
		if nodes, err = r.Restic.List(ctx, repo, id); !errors.Is(err, restic.ErrWrongPassword) {
			break
		}
	}
	if err != nil {
		return uploader.ArchiveStats{}, err
	}
	listing := restic.NewListing(nodes)
	log.FromContext(ctx).Info("restore started", "path", dir, "snapshotID", id, "repository", repo.String(), "uploader", "restic")
	var st uploader.ArchiveStats
	err = r.Restic.Dump(ctx, repo, id, func(archive io.Reader) error {
		var err error
		st, err = uploader.RestoreArchive(ctx, archive, dir, uploader.ArchiveOptions{
			WriteSparseFiles: setting(pvr, "WriteSparseFiles") == "true",
			Header:           listing.Header,
			TotalBytes:       listing.TotalBytes, TotalFiles: listing.TotalFiles,
			Progress: r.progress(ctx, pvr),
		})
		return err
	})
	return st, err
}

// resticRepository is the restic repository of the restore: spec.repoIdentifier, or the one
// Velero keeps for the source namespace at the location; with the location's S3 settings and
// credentials, and the passwords that may open it.
func (r *Reconciler) resticRepository(ctx context.Context, pvr *velerov1.PodVolumeRestore) (restic.Repository, []string, error) {
	st, err := r.Repositories.StorageOf(ctx, pvr.Spec.BackupStorageLocation)
	if err != nil {
		return restic.Repository{}, nil, err
	}
	loc := st.Location
	url, err := restic.Resolve(loc, sourceNamespace(pvr), pvr.Spec.RepoIdentifier)
	if err != nil {
		return restic.Repository{}, nil, fmt.Errorf("backup storage location %s: %w", pvr.Spec.BackupStorageLocation, err)
	}
	insecure, _ := strconv.ParseBool(loc.Config["insecureSkipTLSVerify"])
	pathStyle, _ := strconv.ParseBool(loc.Config["s3ForcePathStyle"])
	return restic.Repository{
		URL: url, Credentials: loc.Credentials, Region: loc.Config["region"], CACert: loc.CACert,
		InsecureTLS: insecure, PathStyle: pathStyle, NoLock: st.ReadOnly,
	}, st.Passwords, nil
}
