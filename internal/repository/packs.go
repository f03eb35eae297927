package repository

import (
	"context"
	"fmt"

	"github.com/kopia/kopia/repo/blob"
	"github.com/kopia/kopia/repo/content"
)

// PackBlobs lists the IDs of the repository's pack blobs (data and metadata packs), for
// verifying that every content a snapshot needs lies in a pack that exists
// (uploader.VerifyOptions.Packs). One listing serves every snapshot of the repository; it holds
// about 40 bytes per pack (a pack holds up to 20 MiB or so of contents).
func (r *Repository) PackBlobs(ctx context.Context) (map[string]struct{}, error) {
	packs := map[string]struct{}{}
	for _, prefix := range content.PackBlobIDPrefixes {
		err := r.BlobReader().ListBlobs(ctx, prefix, func(m blob.Metadata) error {
			packs[string(m.BlobID)] = struct{}{}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("list the packs of %s: %w", r.location, err)
		}
	}
	return packs, nil
}
