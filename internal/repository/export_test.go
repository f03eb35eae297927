package repository

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/kopia/kopia/repo/blob"
	"github.com/kopia/kopia/repo/format"
)

// LockConfig sets the exclusive lock's clock and delays in tests.
type LockConfig struct {
	Now                     func() time.Time
	TTL, Settle, RenewEvery time.Duration
}

// Lock is the repository's exclusive lock as one process sees it.
type Lock struct{ l *exclusiveLock }

// NewLock returns the lock of loc; every acquisition opens its own connection to the storage.
func NewLock(loc Location, c LockConfig) *Lock {
	return &Lock{&exclusiveLock{location: loc, now: c.Now, ttl: c.TTL, settle: c.Settle, renewEvery: c.RenewEvery}}
}

// LockOf returns the lock that r's maintenance and password changes take, configured by c.
func LockOf(r *Repository, c LockConfig) *Lock {
	r.lock.now, r.lock.ttl, r.lock.settle, r.lock.renewEvery = c.Now, c.TTL, c.Settle, c.RenewEvery
	return &Lock{r.lock}
}

// HeldLock is one acquisition.
type HeldLock struct{ h *heldLock }

// Acquire takes the lock.
func (l *Lock) Acquire(ctx context.Context, holder, operation string) (*HeldLock, error) {
	h, err := l.l.acquire(ctx, holder, operation)
	if err != nil {
		return nil, err
	}
	return &HeldLock{h}, nil
}

// WaitFree waits up to timeout until nobody holds the lock.
func (l *Lock) WaitFree(ctx context.Context, timeout time.Duration) error {
	st, err := l.l.location.storage(ctx, false)
	if err != nil {
		return err
	}
	defer st.Close(ctx) //nolint:errcheck // read only
	return l.l.waitFree(ctx, st, timeout)
}

// LockBlob is one blob of the lock as it is stored.
type LockBlob struct {
	ID                string
	Holder, Operation string
	Acquired, Expires time.Time
	Held              bool
}

// Blobs returns the lock's blobs, expired ones included: the claims, then a legacy lock blob.
func (l *Lock) Blobs(ctx context.Context) ([]LockBlob, error) {
	st, err := l.l.location.storage(ctx, false)
	if err != nil {
		return nil, err
	}
	defer st.Close(ctx) //nolint:errcheck // read only
	var found []LockBlob
	for _, prefix := range []blob.ID{claimPrefix, legacyLockBlobID} {
		var ids []blob.ID
		if err := st.ListBlobs(ctx, prefix, func(m blob.Metadata) error { ids = append(ids, m.BlobID); return nil }); err != nil {
			return nil, err
		}
		slices.Sort(ids)
		for _, id := range ids {
			rec, err := l.l.read(ctx, st, id)
			if err != nil {
				return nil, err
			}
			found = append(found, LockBlob{ID: string(id), Holder: rec.Holder, Operation: rec.Operation,
				Acquired: rec.Acquired, Expires: rec.Expires, Held: rec.Held})
		}
	}
	return found, nil
}

// DeleteClaims deletes every claim, as a process whose clock ran far ahead might.
func (l *Lock) DeleteClaims(ctx context.Context) error {
	blobs, err := l.Blobs(ctx)
	if err != nil {
		return err
	}
	st, err := l.l.location.storage(ctx, false)
	if err != nil {
		return err
	}
	defer st.Close(ctx) //nolint:errcheck // deletes are done
	for _, b := range blobs {
		if b.ID != string(legacyLockBlobID) {
			if err := st.DeleteBlob(ctx, blob.ID(b.ID)); err != nil {
				return err
			}
		}
	}
	return nil
}

// PutLegacyLock writes the lock blob of an older Ferry.
func PutLegacyLock(ctx context.Context, loc Location, holder, operation string, acquired, expires time.Time) error {
	st, err := loc.storage(ctx, true)
	if err != nil {
		return err
	}
	defer st.Close(ctx) //nolint:errcheck // the write is done
	return putRecord(ctx, st, legacyLockBlobID, &lockRecord{Holder: holder, Operation: operation, Acquired: acquired, Expires: expires})
}

// CreateStorage creates the location's directory (filesystem) and checks that it is reachable.
func CreateStorage(ctx context.Context, loc Location) error {
	st, err := loc.storage(ctx, true)
	if err != nil {
		return err
	}
	return st.Close(ctx)
}

// Context ends when the lock is released or lost.
func (h *HeldLock) Context() context.Context { return h.h.ctx }

// Release frees the lock.
func (h *HeldLock) Release() { h.h.release() }

// Crash stops renewing the claim and leaves it behind, as a process that dies would.
func (h *HeldLock) Crash() {
	h.h.stop()
	<-h.h.done
	_ = h.h.st.Close(context.Background())
}

// InterruptPasswordChange runs Kopia's own password change from oldPassword to newPassword and
// fails its second write (kopia.repository), as a process killed between the two would leave
// the repository.
func InterruptPasswordChange(t testing.TB, loc Location, oldPassword, newPassword string) {
	t.Helper()
	st, err := loc.storage(t.Context(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close(context.Background()) //nolint:errcheck // the write is done
	m, err := format.NewManager(t.Context(), killedBeforeFormat{st}, "", format.DefaultRepositoryBlobCacheDuration, oldPassword, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.ChangePassword(t.Context(), newPassword); !errors.Is(err, errKilled) {
		t.Fatalf("the interrupted password change: %v", err)
	}
}

var errKilled = errors.New("killed before writing kopia.repository")

type killedBeforeFormat struct{ blob.Storage }

func (k killedBeforeFormat) PutBlob(ctx context.Context, id blob.ID, data blob.Bytes, opts blob.PutOptions) error {
	if id == format.KopiaRepositoryBlobID {
		return errKilled
	}
	return k.Storage.PutBlob(ctx, id, data, opts)
}
