package repository

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/kopia/kopia/repo"
	"github.com/kopia/kopia/repo/manifest"
)

// Records are small JSON documents Ferry keeps inside the repository next to the snapshots, e.g.
// which volumes a backup holds and how to recreate their claims, so that a fresh cluster with the
// repository password finds everything in the storage alone. They are Kopia manifests labelled
// type=ferry-<kind>, encrypted like everything else.

// ErrNoRecord is returned when no record of that kind and name exists.
var ErrNoRecord = errors.New("no such record")

func recordLabels(kind, name string) map[string]string {
	return map[string]string{"type": "ferry-" + kind, "name": name}
}

// SaveRecord stores payload (JSON-encoded) as the record kind/name, replacing an older one.
func (r *Repository) SaveRecord(ctx context.Context, kind, name string, payload any) error {
	return repo.WriteSession(ctx, r, repo.WriteSessionOptions{Purpose: "ferry: record"}, func(ctx context.Context, w repo.RepositoryWriter) error {
		if _, err := w.ReplaceManifests(ctx, recordLabels(kind, name), payload); err != nil {
			return fmt.Errorf("save %s record %s: %w", kind, name, err)
		}
		return nil
	})
}

// LoadRecord decodes the record kind/name into payload.
func (r *Repository) LoadRecord(ctx context.Context, kind, name string, payload any) error {
	found, err := r.FindManifests(ctx, recordLabels(kind, name))
	if err != nil {
		return fmt.Errorf("find %s record %s: %w", kind, name, err)
	}
	if len(found) == 0 {
		return fmt.Errorf("%s record %s: %w", kind, name, ErrNoRecord)
	}
	latest := manifest.PickLatestID(found)
	if _, err := r.GetManifest(ctx, latest, payload); err != nil {
		return fmt.Errorf("read %s record %s: %w", kind, name, err)
	}
	return nil
}

// DeleteRecord removes the record kind/name, if any.
func (r *Repository) DeleteRecord(ctx context.Context, kind, name string) error {
	found, err := r.FindManifests(ctx, recordLabels(kind, name))
	if err != nil {
		return err
	}
	return repo.WriteSession(ctx, r, repo.WriteSessionOptions{Purpose: "ferry: delete record"}, func(ctx context.Context, w repo.RepositoryWriter) error {
		for _, m := range found {
			if err := w.DeleteManifest(ctx, m.ID); err != nil {
				return err
			}
		}
		return nil
	})
}

// RecordNames returns the names of every record of the kind, sorted.
func (r *Repository) RecordNames(ctx context.Context, kind string) ([]string, error) {
	found, err := r.FindManifests(ctx, map[string]string{"type": "ferry-" + kind})
	if err != nil {
		return nil, fmt.Errorf("list %s records: %w", kind, err)
	}
	seen := map[string]bool{}
	names := make([]string, 0, len(found))
	for _, m := range found {
		if name := m.Labels["name"]; name != "" && !seen[name] {
			seen[name] = true
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names, nil
}
