package repository

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/kopia/kopia/repo/blob"
)

// lockState is one listing of the lock's blobs.
type lockState struct {
	// claims are the unexpired claims, earliest first.
	claims []lockClaim
	// expired are claims whose holders stopped renewing them.
	expired []blob.ID
	// legacy is an unexpired lock blob of an older Ferry.
	legacy *lockRecord
}

type lockClaim struct {
	id  blob.ID
	rec lockRecord
}

// scan lists the claims and reads them and the legacy lock blob.
func (l *exclusiveLock) scan(ctx context.Context, st blob.Storage) (lockState, error) {
	var ids []blob.ID
	err := st.ListBlobs(ctx, claimPrefix, func(m blob.Metadata) error {
		ids = append(ids, m.BlobID)
		return nil
	})
	if err != nil {
		return lockState{}, fmt.Errorf("list lock claims of %s: %w", l.location, err)
	}
	slices.Sort(ids)
	var state lockState
	for _, id := range ids {
		rec, err := l.read(ctx, st, id)
		switch {
		case errors.Is(err, blob.ErrBlobNotFound):
			continue // released since the listing
		case err != nil:
			return lockState{}, err
		case l.expired(rec):
			state.expired = append(state.expired, id)
		default:
			state.claims = append(state.claims, lockClaim{id: id, rec: *rec})
		}
	}
	rec, err := l.read(ctx, st, legacyLockBlobID)
	if err != nil && !errors.Is(err, blob.ErrBlobNotFound) {
		return lockState{}, err
	}
	if err == nil && !l.expired(rec) {
		rec.Held = true
		state.legacy = rec
	}
	return state, nil
}

// expired reports a record whose expiry passed by more than the clock skew the lock tolerates.
func (l *exclusiveLock) expired(rec *lockRecord) bool {
	return !l.clock().Before(rec.Expires.Add(lockSkew))
}

// heldByOther returns the legacy lock or a held claim other than mine, or nil.
func (s lockState) heldByOther(mine blob.ID) *lockRecord {
	if s.legacy != nil {
		return s.legacy
	}
	for i, c := range s.claims {
		if c.rec.Held && c.id != mine {
			return &s.claims[i].rec
		}
	}
	return nil
}

// around returns the earliest claim ranked before mine, the earliest ranked after it, and
// whether mine was listed. Claim names rank by time, then nonce.
func (s lockState) around(mine blob.ID) (earlier, later *lockRecord, listed bool) {
	for i, c := range s.claims {
		switch cmp := strings.Compare(string(c.id), string(mine)); {
		case cmp < 0 && earlier == nil:
			earlier = &s.claims[i].rec
		case cmp > 0 && later == nil:
			later = &s.claims[i].rec
		case cmp == 0:
			listed = true
		}
	}
	return earlier, later, listed
}

func (l *exclusiveLock) read(ctx context.Context, st blob.Storage, id blob.ID) (*lockRecord, error) {
	var buf byteBuffer
	if err := st.GetBlob(ctx, id, 0, -1, &buf); err != nil {
		if errors.Is(err, blob.ErrBlobNotFound) {
			return nil, err
		}
		return nil, fmt.Errorf("read lock %s of %s: %w", id, l.location, err)
	}
	rec := &lockRecord{}
	if err := json.Unmarshal(buf.Bytes(), rec); err != nil {
		return nil, fmt.Errorf("read lock %s of %s: %w", id, l.location, err)
	}
	return rec, nil
}

func putRecord(ctx context.Context, st blob.Storage, id blob.ID, rec *lockRecord) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return st.PutBlob(ctx, id, blobBytes(data), blob.PutOptions{})
}

// byteBuffer receives a small blob (blob.OutputBuffer).
type byteBuffer struct{ bytes.Buffer }

// Length returns the number of bytes received.
func (b *byteBuffer) Length() int { return b.Len() }

// blobBytes sends a small blob (blob.Bytes).
type blobBytes []byte

func (b blobBytes) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(b)
	return int64(n), err
}

func (b blobBytes) Length() int { return len(b) }

func (b blobBytes) Reader() io.ReadSeekCloser { return nopCloser{bytes.NewReader(b)} }

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }
