package repository

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"time"

	"github.com/kopia/kopia/repo/blob"
)

// Exclusive operations (full maintenance, password changes) hold the repository's exclusive lock,
// kept as blobs in its storage next to Kopia's own. Backups and restores do not take it: Kopia
// makes them safe to run together with each other and with maintenance. What waits for the lock
// is opening the repository, up to Options.LockCheckTimeout (the node-agent ConfigMap's
// backupRepositoryLockCheckTimeout), so that a node-agent does not race a password change with a
// password that is about to stop (or start) working.
//
// The store offers no compare-and-swap, so the lock is taken by writing, waiting and listing:
//
//  1. Each acquisition writes its own claim, ferry-lock-claim.<time>.<nonce>: the nonce is
//     random per acquisition, so two operations of one process, or two processes with the same
//     identity, never share a claim. The claim names the holder, the operation and an expiry.
//  2. It waits the settle delay, then lists the claims, ignoring (and deleting) expired ones.
//  3. It wins only when its claim is the only one listed. When it sees a claim that ranks before
//     its own (by the name: time, then nonce) it deletes its claim and writes it again once that
//     one has gone; when the others rank after it, it keeps its claim and lists again: they
//     back off. A claim marked held, or a ferry-exclusive.lock written by an older Ferry, means
//     the lock is taken: acquire fails with ErrLocked.
//  4. The winner marks its claim held, renews it every TTL/3 (each renewal lists again and
//     checks that its claim is there and that nobody else holds the lock) and deletes it on
//     release. A claim left by a crashed process expires after the TTL (and lockSkew).
//
// Two winners are impossible: each winner's deciding listing started at least the settle delay
// after its claim was written, and showed no other claim. If A and B both won, A's listing missed
// B's claim, so it started less than the settle delay after B's claim was written, which
// makes A's claim the earlier one; by the same argument B's claim is the earlier one, a
// contradiction. Ranks and clocks never enter this argument; they only decide who backs off.
//
// The store must show a blob in every listing that starts at least the settle delay after the
// blob's write returned, until the blob is deleted, and overwriting a blob must not hide it. S3
// (strongly consistent for list-after-write since December 2020), versitygw and a local
// filesystem do this with no delay; a network filesystem must not serve directory listings from a
// cache older than the settle delay (NFS: acdirmax).
//
// Clocks matter only for expiry, and are assumed to differ by at most lockSkew between nodes. A
// claim counts as expired lockSkew after the expiry it records; its holder stops (the held lock's
// context ends) at that expiry by its own clock, unless a renewal landed before it.

// legacyLockBlobID is the single lock blob of Ferry before claims (an unexpired one still counts
// as held); claimPrefix begins the name of every claim. Both are outside the prefixes Kopia's
// maintenance deletes.
const (
	legacyLockBlobID blob.ID = "ferry-exclusive.lock"
	claimPrefix      blob.ID = "ferry-lock-claim."
)

const (
	// lockTTL is how long a claim lives without renewal; a crashed holder frees the lock after it.
	lockTTL = 2 * time.Minute
	// lockSkew is the largest clock difference between two nodes that the lock tolerates.
	lockSkew = 30 * time.Second
	// lockSettle is how long a contender waits between writing its claim and listing the others.
	lockSettle = 2 * time.Second
)

// ErrLocked is returned when another process holds the repository's exclusive lock.
var ErrLocked = errors.New("repository is locked")

// errLockLost ends a held lock's context when the lock could not be kept.
var errLockLost = errors.New("lost the exclusive lock")

type lockRecord struct {
	Holder    string    `json:"holder"`
	Operation string    `json:"operation"`
	Acquired  time.Time `json:"acquired"`
	Expires   time.Time `json:"expires"`
	// Host, PID and Nonce tell acquisitions apart (claims only).
	Host  string `json:"host,omitempty"`
	PID   int    `json:"pid,omitempty"`
	Nonce string `json:"nonce,omitempty"`
	// Held marks a claim that won; a legacy lock blob is always held.
	Held bool `json:"held,omitempty"`
}

type exclusiveLock struct {
	location Location
	// now is the clock; nil means time.Now.
	now func() time.Time
	// ttl and settle default to lockTTL and lockSettle (settle < 0 means none); renewEvery
	// defaults to a third of the TTL.
	ttl, settle, renewEvery time.Duration
}

func (l *exclusiveLock) clock() time.Time {
	if l.now != nil {
		return l.now()
	}
	return time.Now()
}

func (l *exclusiveLock) lease() time.Duration { return orDefault(l.ttl, lockTTL) }

func (l *exclusiveLock) settleDelay() time.Duration {
	return max(orDefault(l.settle, lockSettle), 0)
}

func (l *exclusiveLock) renewal() time.Duration { return orDefault(l.renewEvery, l.lease()/3) }

// poll is how long a contender waits before listing again, with jitter so that contenders
// drift apart.
func (l *exclusiveLock) poll() time.Duration {
	base := min(max(l.settleDelay()/2, 10*time.Millisecond), time.Second)
	return base/2 + rand.N(base)
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
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
		state, err := l.scan(ctx, st)
		if err != nil {
			return err
		}
		rec := state.heldByOther("")
		if rec == nil {
			return nil
		}
		waited := l.clock().Sub(start)
		if waited >= timeout {
			return l.lockedError(rec, waited)
		}
		if err := sleep(ctx, poll); err != nil {
			return fmt.Errorf("wait for the lock of %s: %w", l.location, err)
		}
	}
}

// acquire takes the lock for operation and keeps it until the held lock is released. It does not
// wait for another holder: it returns ErrLocked.
func (l *exclusiveLock) acquire(ctx context.Context, holder, operation string) (*heldLock, error) {
	st, err := l.location.storage(ctx, false)
	if err != nil {
		return nil, err
	}
	h := newHeldLock(l, st, holder, operation)
	if err := h.contend(ctx); err != nil {
		bg, cancel := cleanupContext(ctx)
		defer cancel()
		_ = st.DeleteBlob(bg, h.id) // failing already; a claim left behind expires
		_ = st.Close(bg)
		return nil, err
	}
	h.ctx, h.cancel = context.WithCancelCause(ctx)
	renewCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	h.stop, h.done = stop, make(chan struct{})
	go h.keep(renewCtx)
	return h, nil
}

// heldLock is one acquisition's claim; once acquire returns it, the lock is held until release.
type heldLock struct {
	lock *exclusiveLock
	st   blob.Storage
	id   blob.ID
	rec  lockRecord
	// validUntil is the expiry of the last write of the claim that landed in time.
	validUntil time.Time
	// ctx ends when the lock is released or lost; run the exclusive operation under it.
	ctx    context.Context
	cancel context.CancelCauseFunc
	stop   context.CancelFunc
	done   chan struct{}
}

func newHeldLock(l *exclusiveLock, st blob.Storage, holder, operation string) *heldLock {
	nonce := make([]byte, 8)
	_, _ = crand.Read(nonce) // never fails (crypto/rand)
	now := l.clock().UTC()
	host, _ := os.Hostname() // only shown to people reading the claim
	rec := lockRecord{Holder: holder, Operation: operation, Acquired: now,
		Host: host, PID: os.Getpid(), Nonce: hex.EncodeToString(nonce)}
	// Fixed-width fields, so that the names sort by time, then nonce.
	id := claimPrefix + blob.ID(fmt.Sprintf("%020d.%s", now.UnixNano(), rec.Nonce))
	return &heldLock{lock: l, st: st, id: id, rec: rec}
}

// contend writes the claim and lists the others until the claim wins, another holder is seen,
// or half the TTL has passed.
func (h *heldLock) contend(ctx context.Context) error {
	l := h.lock
	start := l.clock()
	claimed := false
	for {
		if !claimed {
			if err := h.write(ctx, false); err != nil {
				return err
			}
			claimed = true
			if err := sleep(ctx, l.settleDelay()); err != nil {
				return fmt.Errorf("lock %s: %w", l.location, err)
			}
		}
		state, err := l.scan(ctx, h.st)
		if err != nil {
			return err
		}
		l.clean(ctx, h.st, state.expired)
		if rec := state.heldByOther(h.id); rec != nil {
			return l.lockedError(rec, 0)
		}
		earlier, later, mine := state.around(h.id)
		switch {
		case !mine:
			return fmt.Errorf("lock %s: claim %s vanished while contending", l.location, h.id)
		case earlier != nil:
			if err := h.st.DeleteBlob(ctx, h.id); err != nil {
				return fmt.Errorf("lock %s: %w", l.location, err)
			}
			claimed = false
			if err := h.waitForEarlier(ctx, start); err != nil {
				return err
			}
			continue
		case later == nil:
			h.rec.Held = true
			return h.write(ctx, true)
		}
		if err := h.waitOrGiveUp(ctx, start, later); err != nil {
			return err
		}
	}
}

// waitForEarlier waits, without a claim, until no claim ranks before this one.
func (h *heldLock) waitForEarlier(ctx context.Context, start time.Time) error {
	for {
		state, err := h.lock.scan(ctx, h.st)
		if err != nil {
			return err
		}
		if rec := state.heldByOther(h.id); rec != nil {
			return h.lock.lockedError(rec, 0)
		}
		earlier, _, _ := state.around(h.id)
		if earlier == nil {
			return nil
		}
		if err := h.waitOrGiveUp(ctx, start, earlier); err != nil {
			return err
		}
	}
}

// waitOrGiveUp waits one poll, or returns ErrLocked naming other once contending took half the
// TTL (the claim is rewritten more often than that, so it never expires while contending).
func (h *heldLock) waitOrGiveUp(ctx context.Context, start time.Time, other *lockRecord) error {
	if waited := h.lock.clock().Sub(start); waited >= h.lock.lease()/2 {
		return h.lock.lockedError(other, waited)
	}
	if err := sleep(ctx, h.lock.poll()); err != nil {
		return fmt.Errorf("lock %s: %w", h.lock.location, err)
	}
	return nil
}

// keep renews the claim until release, and ends the held lock's context when it cannot.
func (h *heldLock) keep(ctx context.Context) {
	defer close(h.done)
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(h.lock.renewal()):
		}
		err := h.renew(ctx)
		if err != nil && (errors.Is(err, errLockLost) || !h.lock.clock().Before(h.validUntil)) {
			h.cancel(fmt.Errorf("%w of %s: %w", errLockLost, h.lock.location, err))
			return
		}
		// Otherwise the next renewal tries again; the TTL covers two missed ones.
	}
}

// renew checks that the claim is still the holder and extends it.
func (h *heldLock) renew(ctx context.Context) error {
	wctx, cancel := context.WithTimeout(ctx, h.validUntil.Sub(h.lock.clock()))
	defer cancel()
	state, err := h.lock.scan(wctx, h.st)
	if err != nil {
		return err
	}
	if rec := state.heldByOther(h.id); rec != nil {
		return fmt.Errorf("%w: %s by %s holds it too", errLockLost, rec.Operation, rec.Holder)
	}
	if _, _, mine := state.around(h.id); !mine {
		return fmt.Errorf("%w: claim %s was deleted", errLockLost, h.id)
	}
	return h.write(wctx, true)
}

// write puts the claim with a fresh expiry. extend means the claim already exists: the write
// then counts only if it landed before the claim expired, since after that another contender may
// have deleted it.
func (h *heldLock) write(ctx context.Context, extend bool) error {
	start := h.lock.clock()
	rec := h.rec
	rec.Expires = start.Add(h.lock.lease()).UTC()
	if err := putRecord(ctx, h.st, h.id, &rec); err != nil {
		return fmt.Errorf("write lock claim of %s: %w", h.lock.location, err)
	}
	if extend && !h.lock.clock().Before(h.validUntil) {
		return fmt.Errorf("%w: claim %s expired before its renewal landed", errLockLost, h.id)
	}
	h.validUntil = rec.Expires
	return nil
}

// release deletes the claim; the lock is free again.
func (h *heldLock) release() {
	h.stop()
	<-h.done
	h.cancel(nil)
	bg, cancel := cleanupContext(h.ctx)
	defer cancel()
	_ = h.st.DeleteBlob(bg, h.id) // an undeleted claim expires after the TTL
	_ = h.st.Close(bg)
}

// cleanupTimeout bounds the clean-up after an operation, which runs even when the operation's
// context has ended: deleting a lock claim (one that is not deleted expires).
const cleanupTimeout = 30 * time.Second

func cleanupContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
}

// explain names a lost lock as the cause of err, an error of the operation run under h.ctx.
func (h *heldLock) explain(err error) error {
	if cause := context.Cause(h.ctx); err != nil && errors.Is(cause, errLockLost) {
		return fmt.Errorf("%w: %w", cause, err)
	}
	return err
}

// clean deletes expired claims; a failure is harmless, expired claims are ignored.
func (l *exclusiveLock) clean(ctx context.Context, st blob.Storage, expired []blob.ID) {
	for _, id := range expired {
		_ = st.DeleteBlob(ctx, id)
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
