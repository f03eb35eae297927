package repository

import (
	"context"
	"fmt"
	"sync"

	"github.com/kopia/kopia/repo/blob"
	"github.com/kopia/kopia/repo/format"
)

// An open repository re-reads its two format blobs (kopia.repository, kopia.blobcfg) every 15
// minutes and decrypts them with the key it derived from its password when it opened. Once
// another process changed the password, that fails — Kopia has no way to give an open
// repository the new key — and every later read or write of the handle fails with "invalid
// repository password": a backup or restore running across a rotation would fail.
//
// formatPin is the storage under every repository Ferry opens. It reads the format blobs for
// Kopia and hands them over as long as the handle's password opens them; once it does not (the
// password was changed elsewhere), it goes on handing over the blobs the handle last opened. The
// content of the format does not change with the password (the data keys stay; only the key that
// wraps them does), so the handle keeps reading and writing the same repository. What it no
// longer sees are later changes of the format itself: a Kopia format upgrade or changed
// parameters, which Ferry never makes.
type formatPin struct {
	blob.Storage
	password *passwordBox

	mu sync.Mutex
	// held are the format blobs the handle opened last; nil until Kopia first reads them.
	held *formatBlobs
	// refused are the last blobs refusedBy did not open: not tried again (scrypt is slow).
	refused   *formatBlobs
	refusedBy string
}

// passwordBox holds the password of an open repository; ChangePassword through the handle
// itself replaces it.
type passwordBox struct {
	mu       sync.Mutex
	password string
}

func (b *passwordBox) get() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.password
}

func (b *passwordBox) set(p string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.password = p
}

// GetBlob serves the format blobs as described above, every other blob from storage.
func (p *formatPin) GetBlob(ctx context.Context, id blob.ID, offset, length int64, output blob.OutputBuffer) error {
	switch id {
	case format.KopiaRepositoryBlobID:
		held, err := p.refresh(ctx)
		if err != nil {
			return err
		}
		return serve(held.repository, offset, length, output)
	case format.KopiaBlobCfgBlobID:
		p.mu.Lock()
		held := p.held
		p.mu.Unlock()
		if held == nil { // Kopia reads kopia.repository first; this is someone else's read
			return p.Storage.GetBlob(ctx, id, offset, length, output)
		}
		if held.blobCfg == nil {
			return fmt.Errorf("%s: %w", id, blob.ErrBlobNotFound)
		}
		return serve(held.blobCfg, offset, length, output)
	default:
		return p.Storage.GetBlob(ctx, id, offset, length, output)
	}
}

// refresh reads both format blobs and keeps them if they are the first, unchanged, or opened by
// the handle's password; it returns the blobs to hand over.
func (p *formatPin) refresh(ctx context.Context) (*formatBlobs, error) {
	fresh, err := readFormatBlobs(ctx, p.Storage)
	if err != nil {
		return nil, err
	}
	password := p.password.get()
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.held == nil || p.held.equal(fresh):
		p.held = fresh
	case p.refused != nil && p.refusedBy == password && p.refused.equal(fresh):
	case fresh.opens(ctx, password):
		p.held = fresh
	default:
		p.refused, p.refusedBy = fresh, password
	}
	return p.held, nil
}
