package uploader

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/kopia/kopia/repo"
	"github.com/kopia/kopia/repo/manifest"
	"github.com/kopia/kopia/snapshot"
)

// Snapshot describes one snapshot in a repository.
type Snapshot struct {
	ID string
	// Source is the backed-up source (BackupOptions.Source) and the identity that wrote it.
	Source, Host, User string
	Start, End         time.Time
	Files              int64
	Bytes              int64
	Tags               map[string]string
	// Incomplete is set on checkpoints of interrupted backups.
	Incomplete bool
}

// List returns the snapshots whose tags include all of tags (all snapshots when tags is empty),
// oldest first. Checkpoints are left out unless withCheckpoints is set.
func List(ctx context.Context, rep repo.Repository, tags map[string]string, withCheckpoints bool) ([]Snapshot, error) {
	ids, err := snapshot.ListSnapshotManifests(ctx, rep, nil, tags)
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	mans, err := snapshot.LoadSnapshots(ctx, rep, ids)
	if err != nil {
		return nil, fmt.Errorf("load snapshots: %w", err)
	}
	out := make([]Snapshot, 0, len(mans))
	for _, m := range mans {
		if m.IncompleteReason != "" && !withCheckpoints {
			continue
		}
		out = append(out, Snapshot{
			ID: string(m.ID), Source: m.Source.Path, Host: m.Source.Host, User: m.Source.UserName,
			Start: m.StartTime.ToTime(), End: m.EndTime.ToTime(),
			Files: int64(m.Stats.TotalFileCount), Bytes: m.Stats.TotalFileSize,
			Tags: m.Tags, Incomplete: m.IncompleteReason != "",
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out, nil
}

// Delete removes snapshots by ID. Their data stays in the repository until full maintenance
// finds it unreferenced.
func Delete(ctx context.Context, rep repo.Repository, ids ...string) error {
	return repo.WriteSession(ctx, rep, repo.WriteSessionOptions{Purpose: "ferry: delete snapshots"},
		func(ctx context.Context, w repo.RepositoryWriter) error {
			for _, id := range ids {
				if _, err := snapshot.LoadSnapshot(ctx, w, manifest.ID(id)); err != nil {
					return fmt.Errorf("snapshot %s: %w", id, err)
				}
				if err := w.DeleteManifest(ctx, manifest.ID(id)); err != nil {
					return fmt.Errorf("delete snapshot %s: %w", id, err)
				}
			}
			return nil
		})
}
