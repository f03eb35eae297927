package repository

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/kopia/kopia/repo/blob"
)

// Probe checks that the location's storage is reachable with its credentials: it reads, and when
// write is set also writes and deletes a small object. A missing directory is created when write
// is set. It never touches the repository's own objects.
func Probe(ctx context.Context, loc Location, write bool) error {
	st, err := loc.storage(ctx, write)
	if err != nil {
		return err
	}
	defer st.Close(ctx) //nolint:errcheck // nothing pending
	if _, err := st.GetMetadata(ctx, "kopia.repository"); err != nil && !errors.Is(err, blob.ErrBlobNotFound) {
		return fmt.Errorf("read %s: %w", loc, err)
	}
	if !write {
		return nil
	}
	suffix := make([]byte, 8)
	_, _ = rand.Read(suffix)
	id := blob.ID("ferry-probe-" + hex.EncodeToString(suffix))
	if err := st.PutBlob(ctx, id, blobBytes("ferry"), blob.PutOptions{}); err != nil {
		return fmt.Errorf("write to %s: %w", loc, err)
	}
	if err := st.DeleteBlob(ctx, id); err != nil {
		return fmt.Errorf("delete from %s: %w", loc, err)
	}
	return nil
}
