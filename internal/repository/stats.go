package repository

import (
	"context"
	"fmt"
	"strings"

	"github.com/kopia/kopia/repo/blob"
	"github.com/kopia/kopia/repo/content"
	"github.com/kopia/kopia/snapshot"
)

// Blob kinds of Stats.Blobs and Stats.BlobBytes.
const (
	// BlobPack is a data pack (p…): file contents.
	BlobPack = "pack"
	// BlobMetadataPack is a metadata pack (q…): directory listings, manifests, indirect objects.
	BlobMetadataPack = "metadata"
	// BlobIndex is an index blob (x…, and n… of the legacy index format).
	BlobIndex = "index"
	// BlobOther is any other blob: the format blobs, logs, locks, session markers.
	BlobOther = "other"
)

// Stats describe a repository's size and what it holds. JSON keys are short: the stats travel in
// a maintenance Job's termination message, which holds 4 KiB.
type Stats struct {
	// SizeBytes is the size of all blobs.
	SizeBytes int64 `json:"size"`
	// Blobs and BlobBytes count the blobs and their bytes by kind (BlobPack, …).
	Blobs     map[string]int64 `json:"blobs"`
	BlobBytes map[string]int64 `json:"blobBytes"`
	// Snapshots counts the snapshot manifests; LogicalBytes sums the sizes of the files of
	// every snapshot (its root's summary), as if each were stored in full.
	Snapshots    int64 `json:"snapshots"`
	LogicalBytes int64 `json:"logical"`
	// Contents counts the contents the index lists as live and LiveBytes their packed bytes;
	// DeletedContents and DeletedBytes those marked deleted, which full maintenance found no
	// snapshot references.
	Contents        int64 `json:"contents"`
	LiveBytes       int64 `json:"live"`
	DeletedContents int64 `json:"deleted"`
	DeletedBytes    int64 `json:"deletedBytes"`
}

// PackBytes is the size of all packs, data and metadata.
func (s Stats) PackBytes() int64 { return s.BlobBytes[BlobPack] + s.BlobBytes[BlobMetadataPack] }

// DedupRatio is LogicalBytes over LiveBytes: how many bytes of snapshot data each stored byte
// stands for, deduplication and compression together. Zero when nothing is stored.
func (s Stats) DedupRatio() float64 {
	if s.LiveBytes == 0 {
		return 0
	}
	return float64(s.LogicalBytes) / float64(s.LiveBytes)
}

// ReclaimableBytes is the dead space in packs: PackBytes less LiveBytes. It holds the contents
// full maintenance marked deleted and those it already dropped from the index but whose packs
// still hold them (with the packs' few bytes of headers). Later full maintenance runs free it as
// they delete the packs left without live contents and rewrite short packs (live contents under
// 60% of the maximum pack size); a pack whose live contents stay above that keeps its dead bytes. Data no snapshot references any more but
// that full maintenance has not yet marked (it walks every snapshot to know) is not counted.
func (s Stats) ReclaimableBytes() int64 { return max(0, s.PackBytes()-s.LiveBytes) }

// Stats measures the repository: one listing of the blobs, one pass over the content index
// (which Kopia holds in memory or memory-maps already; no content is read) and the snapshot
// manifests.
func (r *Repository) Stats(ctx context.Context) (Stats, error) {
	s := Stats{Blobs: map[string]int64{}, BlobBytes: map[string]int64{}}
	err := r.BlobReader().ListBlobs(ctx, "", func(m blob.Metadata) error {
		kind := blobKind(m.BlobID)
		s.Blobs[kind]++
		s.BlobBytes[kind] += m.Length
		s.SizeBytes += m.Length
		return nil
	})
	if err != nil {
		return Stats{}, fmt.Errorf("list the blobs of %s: %w", r.location, err)
	}
	err = r.ContentReader().IterateContents(ctx, content.IterateOptions{IncludeDeleted: true}, func(i content.Info) error {
		if i.Deleted {
			s.DeletedContents++
			s.DeletedBytes += int64(i.PackedLength)
		} else {
			s.Contents++
			s.LiveBytes += int64(i.PackedLength)
		}
		return nil
	})
	if err != nil {
		return Stats{}, fmt.Errorf("read the content index of %s: %w", r.location, err)
	}
	ids, err := snapshot.ListSnapshotManifests(ctx, r, nil, nil)
	if err != nil {
		return Stats{}, fmt.Errorf("list the snapshots of %s: %w", r.location, err)
	}
	// Loaded in batches: a manifest holds a root summary of a few hundred bytes.
	for len(ids) > 0 {
		n := min(len(ids), 1000)
		mans, err := snapshot.LoadSnapshots(ctx, r, ids[:n])
		if err != nil {
			return Stats{}, fmt.Errorf("load the snapshots of %s: %w", r.location, err)
		}
		for _, m := range mans {
			s.Snapshots++
			if m.RootEntry != nil && m.RootEntry.DirSummary != nil {
				s.LogicalBytes += m.RootEntry.DirSummary.TotalFileSize
			} else if m.RootEntry != nil {
				s.LogicalBytes += m.RootEntry.FileSize
			}
		}
		ids = ids[n:]
	}
	return s, nil
}

func blobKind(id blob.ID) string {
	switch {
	case strings.HasPrefix(string(id), string(content.PackBlobIDPrefixRegular)):
		return BlobPack
	case strings.HasPrefix(string(id), string(content.PackBlobIDPrefixSpecial)):
		return BlobMetadataPack
	case strings.HasPrefix(string(id), "x"), strings.HasPrefix(string(id), "n"):
		return BlobIndex
	default:
		return BlobOther
	}
}
