package deletebackuprequest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/backuprecord"
	"github.com/ferry-backup/ferry/internal/repoaccess"
	"github.com/ferry-backup/ferry/internal/repository"
	"github.com/ferry-backup/ferry/internal/uploader"
)

// deleteData deletes the backup's snapshots (checkpoints too) and its record, and returns how
// many snapshots it deleted. The record is in the location's repository; the snapshots are there
// too, and in Velero's layout in the repository of each volume namespace the backup wrote to
// (namespaces: those its PodVolumeBackups and DataUploads name; the record adds its volumes').
// A snapshot belongs to the backup when it is owned (its PodVolumeBackup or DataUpload names
// it), the record names it, or its tags carry the backup's name and the UID of the Backup (or of
// the original one, for a Backup recreated by backup sync). The record goes last, so that a
// deletion that failed half way finds the same repositories when it is asked again.
func (r *Reconciler) deleteData(ctx context.Context, location string, b *velerov1.Backup, owned map[string]bool, namespaces []string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, DeleteLimit)
	defer cancel()
	rep, release, err := r.Repositories.Open(ctx, location, repoaccess.ForBackup)
	if err != nil {
		return 0, fmt.Errorf("delete the data of backup %s: %w", b.Name, err)
	}
	defer release()
	uids := map[string]bool{string(b.UID): true}
	var rec backuprecord.Record
	var recorded []string // the namespace repositories the record names
	switch err := rep.LoadRecord(ctx, backuprecord.Kind, b.Name, &rec); {
	case err == nil:
		uids[rec.UID] = true
		for _, v := range rec.Volumes {
			owned[v.SnapshotID] = true
			namespaces = append(namespaces, v.Namespace)
			if v.RepositoryNamespace != "" {
				recorded = append(recorded, v.RepositoryNamespace)
			}
		}
	case !errors.Is(err, repository.ErrNoRecord):
		return 0, fmt.Errorf("read the record of backup %s: %w", b.Name, err)
	}
	reps, err := r.namespaceRepositories(ctx, b, location, namespaces, recorded)
	defer func() {
		for _, nr := range reps {
			nr.release()
		}
	}()
	if err != nil {
		return 0, fmt.Errorf("delete the data of backup %s: %w", b.Name, err)
	}
	reps = append([]openRepository{{rep: rep, release: func() {}}}, reps...)
	deleted, err := deleteSnapshots(ctx, reps, b.Name, uids, owned)
	if err != nil {
		return deleted, fmt.Errorf("delete the snapshots of backup %s (%d deleted): %w", b.Name, deleted, err)
	}
	if err := rep.DeleteRecord(ctx, backuprecord.Kind, b.Name); err != nil {
		return deleted, fmt.Errorf("delete the record of backup %s (its %d snapshots are deleted): %w", b.Name, deleted, err)
	}
	return deleted, nil
}

type openRepository struct {
	rep     *repository.Repository
	release func()
}

// namespaceRepositories opens the repositories of those of namespaces that have Velero's layout
// at the location, and of the recorded namespaces (which the record of the backup places in
// Velero's layout, whatever the location says now), each once and only where it exists; the
// location's own is not among them. In Ferry's layout it opens none.
func (r *Reconciler) namespaceRepositories(ctx context.Context, b *velerov1.Backup, location string, namespaces, recorded []string) ([]openRepository, error) {
	bsl := &velerov1.BackupStorageLocation{}
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: b.Namespace, Name: location}, bsl); err != nil {
		return nil, fmt.Errorf("read backup storage location %s: %w", location, err)
	}
	wanted := slices.Clone(recorded)
	for _, ns := range namespaces {
		if ns == "" || slices.Contains(recorded, ns) {
			continue
		}
		layout, err := repoaccess.LayoutOf(ctx, r.Client, bsl, ns)
		if err != nil {
			return nil, err
		}
		if layout == repoaccess.LayoutVelero {
			wanted = append(wanted, ns)
		}
	}
	slices.Sort(wanted)
	var reps []openRepository
	for _, ns := range slices.Compact(wanted) {
		// ForReading: a repository that does not exist holds nothing to delete and is not
		// created for it.
		rep, release, err := r.Repositories.OpenNamespace(ctx, location, ns, repoaccess.ForReading)
		switch {
		case errors.Is(err, repository.ErrNotInitialized):
			continue
		case err != nil:
			return reps, fmt.Errorf("repository of namespace %s: %w", ns, err)
		}
		reps = append(reps, openRepository{rep: rep, release: release})
	}
	return reps, nil
}

// deleteSnapshots deletes, from each repository, the snapshots of the backup; see deleteData.
// Owned snapshots without the backup's tags are looked for among all snapshots only when the
// tagged ones of every repository did not include them.
func deleteSnapshots(ctx context.Context, reps []openRepository, backup string, uids, owned map[string]bool) (int, error) {
	untagged := maps.Clone(owned) // named by this backup's objects, whatever their tags
	delete(untagged, "")
	ids := make([][]string, len(reps))
	for i, nr := range reps {
		tagged, err := uploader.List(ctx, nr.rep, map[string]string{"backup": backup}, true)
		if err != nil {
			return 0, fmt.Errorf("list the snapshots in %s: %w", nr.rep.Location(), err)
		}
		for _, s := range tagged {
			if owned[s.ID] || uids[s.Tags["backup-uid"]] {
				ids[i] = append(ids[i], s.ID)
			}
			delete(untagged, s.ID)
		}
	}
	for i, nr := range reps {
		if len(untagged) == 0 {
			break
		}
		all, err := uploader.List(ctx, nr.rep, nil, true)
		if err != nil {
			return 0, fmt.Errorf("list the snapshots in %s: %w", nr.rep.Location(), err)
		}
		for _, s := range all {
			if untagged[s.ID] {
				ids[i] = append(ids[i], s.ID)
				delete(untagged, s.ID)
			}
		}
	}
	deleted := 0
	for i, nr := range reps {
		if len(ids[i]) == 0 {
			continue
		}
		if err := uploader.Delete(ctx, nr.rep, ids[i]...); err != nil {
			return deleted, fmt.Errorf("delete snapshots in %s: %w", nr.rep.Location(), err)
		}
		deleted += len(ids[i])
	}
	return deleted, nil
}
