package repository

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/kopia/kopia/repo/blob"
)

// Exclusive operations (full maintenance, password changes) hold a lock blob in the repository's
// storage, next to Kopia's own blobs. Backups and restores do not take it: Kopia makes them safe
// to run together with each other and with maintenance. What waits for the lock is opening the
// repository, up to Options.LockCheckTimeout (the node-agent ConfigMap's
// backupRepositoryLockCheckTimeout), so that a node-agent does not race a password change with a
// password that is about to stop (or start) working.
//
// The blob store offers no compare-and-swap, so two processes taking the lock at the same moment
// could both believe they hold it. Only ferry-server takes it, and only its elected leader runs
// maintenance and password changes, so that race does not arise in Ferry.

// lockBlobID is outside the prefixes Kopia's maintenance deletes.
const lockBlobID blob.ID = "ferry-exclusive.lock"

// lockTTL is how long a lock lives without renewal; a crashed holder frees it after this.
const lockTTL = 2 * time.Minute

// ErrLocked is returned when another process holds the repository's exclusive lock.
var ErrLocked = errors.New("repository is locked")

type lockRecord struct {
	Holder    string    `json:"holder"`
	Operation string    `json:"operation"`
	Acquired  time.Time `json:"acquired"`
	Expires   time.Time `json:"expires"`
}

type exclusiveLock struct {
	location Location
	now      func() time.Time
}

func (l *exclusiveLock) clock() time.Time {
	if l.now != nil {
		return l.now()
	}
	return time.Now()
}

// read returns the current lock, or nil when there is none or it expired.
func (l *exclusiveLock) read(ctx context.Context, st blob.Storage) (*lockRecord, error) {
	var buf byteBuffer
	err := st.GetBlob(ctx, lockBlobID, 0, -1, &buf)
	if errors.Is(err, blob.ErrBlobNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read lock of %s: %w", l.location, err)
	}
	rec := &lockRecord{}
	if err := json.Unmarshal(buf.Bytes(), rec); err != nil {
		return nil, fmt.Errorf("read lock of %s: %w", l.location, err)
	}
	if !l.clock().Before(rec.Expires) {
		return nil, nil
	}
	return rec, nil
}

func (l *exclusiveLock) lockedError(rec *lockRecord, waited time.Duration) error {
	return fmt.Errorf("%w: %s by %s since %s (waited %s, backupRepositoryLockCheckTimeout)",
		ErrLocked, rec.Operation, rec.Holder, rec.Acquired.UTC().Format(time.RFC3339), waited.Round(time.Millisecond))
}

// waitFree returns once no other process holds the lock, or ErrLocked after timeout.
func (l *exclusiveLock) waitFree(ctx context.Context, st blob.Storage, timeout time.Duration) error {
	start := l.clock()
	poll := min(max(timeout/20, 50*time.Millisecond), 2*time.Second)
	for {
		rec, err := l.read(ctx, st)
		if err != nil || rec == nil {
			return err
		}
		waited := l.clock().Sub(start)
		if waited >= timeout {
			return l.lockedError(rec, waited)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for the lock of %s: %w", l.location, ctx.Err())
		case <-time.After(poll):
		}
	}
}

// acquire takes the lock for operation and keeps it until release is called.
func (l *exclusiveLock) acquire(ctx context.Context, holder, operation string) (release func(), err error) {
	st, err := l.location.storage(ctx, false)
	if err != nil {
		return nil, err
	}
	rec, err := l.read(ctx, st)
	if err != nil {
		st.Close(ctx) //nolint:errcheck // failing already
		return nil, err
	}
	if rec != nil && rec.Holder != holder {
		st.Close(ctx) //nolint:errcheck // failing already
		return nil, l.lockedError(rec, 0)
	}
	mine := lockRecord{Holder: holder, Operation: operation, Acquired: l.clock().UTC()}
	if err := l.write(ctx, st, &mine); err != nil {
		st.Close(ctx) //nolint:errcheck // failing already
		return nil, err
	}
	renewCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-renewCtx.Done():
				return
			case <-time.After(lockTTL / 3):
				_ = l.write(renewCtx, st, &mine) // a missed renewal is retried; the TTL covers two
			}
		}
	}()
	return func() {
		stop()
		<-done
		bg := context.WithoutCancel(ctx)
		_ = st.DeleteBlob(bg, lockBlobID) // an undeleted lock expires after lockTTL
		_ = st.Close(bg)
	}, nil
}

func (l *exclusiveLock) write(ctx context.Context, st blob.Storage, rec *lockRecord) error {
	rec.Expires = l.clock().Add(lockTTL).UTC()
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if err := st.PutBlob(ctx, lockBlobID, blobBytes(data), blob.PutOptions{}); err != nil {
		return fmt.Errorf("write lock of %s: %w", l.location, err)
	}
	return nil
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
