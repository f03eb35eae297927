package repository_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-backup/ferry/internal/repository"
	"github.com/ferry-backup/ferry/internal/repository/repotest"
)

// fastLock skips the settle delay: both test stores list a blob as soon as its write returns.
var fastLock = repository.LockConfig{Settle: -1}

// fakeClock runs with the real clock, shifted by what the test advanced it by.
type fakeClock struct{ offset atomic.Int64 }

func (c *fakeClock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *fakeClock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

// storageOf returns a fresh location of the backend whose storage exists.
func storageOf(t *testing.T, b repotest.Backend) repository.Location {
	t.Helper()
	loc := b.New(t)
	if err := repository.CreateStorage(t.Context(), loc); err != nil {
		t.Fatal(err)
	}
	return loc
}

// mustAcquire takes the lock or stops the test.
func mustAcquire(t *testing.T, lock *repository.Lock, holder, operation string) *repository.HeldLock {
	t.Helper()
	held, err := lock.Acquire(t.Context(), holder, operation)
	if err != nil {
		t.Fatalf("acquire for %s: %v", operation, err)
	}
	return held
}

// wantLocked checks that acquiring fails with ErrLocked, and that the message names held, a
// holder's "operation by holder".
func wantLocked(t *testing.T, lock *repository.Lock, held string) {
	t.Helper()
	_, err := lock.Acquire(t.Context(), "ferry@ferry", "password change")
	if !errors.Is(err, repository.ErrLocked) || !strings.Contains(err.Error(), held) {
		t.Fatalf("acquire: err = %v, want ErrLocked naming %q", err, held)
	}
}

func TestLockMakesOpenWaitThenFail(t *testing.T) {
	for _, b := range repotest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			loc := b.New(t)
			r, err := open(t, loc, "pw")
			if err != nil {
				t.Fatal(err)
			}
			lock := repository.LockOf(r, fastLock)
			held := mustAcquire(t, lock, "maintenance@ferry", "full maintenance")

			start := time.Now()
			_, err = open(t, loc, "pw", func(o *repository.Options) { o.LockCheckTimeout = 300 * time.Millisecond })
			if !errors.Is(err, repository.ErrLocked) || !strings.Contains(err.Error(), "full maintenance by maintenance@ferry since ") {
				t.Fatalf("err = %v, want ErrLocked naming the operation and holder", err)
			}
			if waited := time.Since(start); waited < 300*time.Millisecond {
				t.Errorf("gave up after %s, before the 300ms lock check timeout", waited)
			}
			// The same identity, even the same process, is a second holder.
			wantLocked(t, lock, "full maintenance by maintenance@ferry")

			held.Release()
			if _, err := open(t, loc, "pw"); err != nil {
				t.Fatalf("open after release: %v", err)
			}
		})
	}
}

// TestLockExcludesRacingContenders has processes, each with its own connections, take the lock
// over and over; no two may ever be inside at once. Half of them share one identity, as Ferry's
// processes do. The single lock blob of earlier versions (read, then write, re-entrant for one
// identity) failed this on both backends, with hundreds of overlaps.
func TestLockExcludesRacingContenders(t *testing.T) {
	const contenders, attempts = 8, 50
	for _, b := range repotest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			loc := storageOf(t, b)
			var inside, overlaps, wins, tries, done atomic.Int64
			var wg sync.WaitGroup
			for i := range contenders {
				lock := repository.NewLock(loc, repository.LockConfig{Settle: time.Millisecond})
				holder := "ferry@ferry"
				if i%2 == 1 {
					holder = fmt.Sprintf("ferry@node-%d", i)
				}
				wg.Go(func() {
					defer done.Add(1)
					for range attempts {
						held, err := lock.Acquire(t.Context(), holder, "full maintenance")
						if err != nil && !errors.Is(err, repository.ErrLocked) {
							t.Error(err)
							return
						}
						if err == nil {
							wins.Add(1)
							if inside.Add(1) > 1 {
								overlaps.Add(1)
							}
							// Stay inside, doing storage work as an exclusive operation does, until
							// another contender finished an attempt (a broken lock lets one in).
							for seen := tries.Load(); tries.Load() == seen && done.Load() < contenders-1 && inside.Load() == 1; {
								if err := repository.CreateStorage(held.Context(), loc); err != nil {
									t.Error(err)
								}
								runtime.Gosched()
							}
							inside.Add(-1)
							held.Release()
						}
						tries.Add(1)
					}
				})
			}
			wg.Wait()
			t.Logf("%d of %d attempts won", wins.Load(), contenders*attempts)
			if n := overlaps.Load(); n > 0 {
				t.Errorf("two holders were inside at once %d times", n)
			}
			if wins.Load() < contenders {
				t.Errorf("only %d attempts won: the race was not exercised", wins.Load())
			}
		})
	}
}

// TestSlowClockDoesNotWinLate: a contender whose clock runs behind ranks first, yet it must not
// take a lock that is already held.
func TestSlowClockDoesNotWinLate(t *testing.T) {
	for _, b := range repotest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			loc := storageOf(t, b)
			defer mustAcquire(t, repository.NewLock(loc, fastLock), "ferry@ferry", "full maintenance").Release()
			behind := func() time.Time { return time.Now().Add(-20 * time.Second) }
			wantLocked(t, repository.NewLock(loc, repository.LockConfig{Now: behind, Settle: -1}), "full maintenance by ferry@ferry")
		})
	}
}

func TestCrashedHolderExpires(t *testing.T) {
	for _, b := range repotest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			loc := storageOf(t, b)
			clock := &fakeClock{}
			config := repository.LockConfig{Now: clock.Now, Settle: -1}
			mustAcquire(t, repository.NewLock(loc, config), "dead@node", "full maintenance").Crash()

			live := repository.NewLock(loc, config)
			wantLocked(t, live, "full maintenance by dead@node")
			clock.Advance(2*time.Minute + 30*time.Second) // the TTL, then the clock skew tolerated
			if err := live.WaitFree(t.Context(), 0); err != nil {
				t.Fatalf("an expired claim still blocks opening: %v", err)
			}
			defer mustAcquire(t, live, "live@node", "password change").Release()
			blobs, err := live.Blobs(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if len(blobs) != 1 || blobs[0].Holder != "live@node" || !blobs[0].Held {
				t.Errorf("lock blobs = %+v, want only the live holder's claim (the expired one deleted)", blobs)
			}
		})
	}
}

func TestRenewalKeepsLockPastTTL(t *testing.T) {
	for _, b := range repotest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			loc := storageOf(t, b)
			clock := &fakeClock{}
			const ttl = time.Minute
			config := repository.LockConfig{Now: clock.Now, TTL: ttl, Settle: -1, RenewEvery: 10 * time.Millisecond}
			lock := repository.NewLock(loc, config)
			held := mustAcquire(t, lock, "maintenance@ferry", "full maintenance")
			other := repository.NewLock(loc, config)
			// Three TTLs, in steps of a third: the renewal interval of the product, so that a
			// renewal begun before a step still lands before the claim expires.
			for range 9 {
				clock.Advance(ttl / 3)
				waitRenewed(t, lock, held, clock.Now().Add(ttl))
				wantLocked(t, other, "full maintenance by maintenance@ferry")
			}
			if err := held.Context().Err(); err != nil {
				t.Fatalf("the held lock's context ended: %v", context.Cause(held.Context()))
			}
			held.Release()
			if held.Context().Err() == nil {
				t.Error("the held lock's context is still alive after release")
			}
			mustAcquire(t, other, "ferry@ferry", "password change").Release()
		})
	}
}

// waitRenewed waits until the lock's held claim expires no earlier than expiry-1s.
func waitRenewed(t *testing.T, lock *repository.Lock, held *repository.HeldLock, expiry time.Time) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		blobs, err := lock.Blobs(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if len(blobs) == 1 && blobs[0].Held && !blobs[0].Expires.Before(expiry.Add(-time.Second)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("claim not renewed to %s (lock lost: %v): %+v", expiry, context.Cause(held.Context()), blobs)
		}
	}
}

func TestHolderThatLosesItsClaimStops(t *testing.T) {
	loc := storageOf(t, repotest.Backend{Name: "filesystem", New: repotest.Filesystem})
	lock := repository.NewLock(loc, repository.LockConfig{Settle: -1, RenewEvery: 10 * time.Millisecond})
	held := mustAcquire(t, lock, "maintenance@ferry", "full maintenance")
	defer held.Release()
	// A renewal under way may write the claim again; delete it until the holder notices.
	deadline := time.Now().Add(10 * time.Second)
	for held.Context().Err() == nil {
		if err := lock.DeleteClaims(t.Context()); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatal("the holder kept going after its claim was deleted")
		}
	}
	if cause := context.Cause(held.Context()); cause == nil || !strings.Contains(cause.Error(), "lost the exclusive lock") {
		t.Errorf("cause = %v, want the lost lock", cause)
	}
}

func TestOlderFerrysLockBlobCountsAsHeld(t *testing.T) {
	for _, b := range repotest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			loc := storageOf(t, b)
			now := time.Now()
			if err := repository.PutLegacyLock(t.Context(), loc, "maintenance@ferry", "password change", now, now.Add(time.Minute)); err != nil {
				t.Fatal(err)
			}
			lock := repository.NewLock(loc, fastLock)
			if err := lock.WaitFree(t.Context(), 0); !errors.Is(err, repository.ErrLocked) ||
				!strings.Contains(err.Error(), "password change by maintenance@ferry") {
				t.Errorf("open: err = %v, want ErrLocked naming the old holder", err)
			}
			wantLocked(t, lock, "password change by maintenance@ferry")

			hourAgo := now.Add(-time.Hour)
			if err := repository.PutLegacyLock(t.Context(), loc, "dead@node", "password change", hourAgo, hourAgo.Add(2*time.Minute)); err != nil {
				t.Fatal(err)
			}
			if err := lock.WaitFree(t.Context(), 0); err != nil {
				t.Errorf("an hour-old lock blob still blocks opening: %v", err)
			}
			mustAcquire(t, lock, "ferry@ferry", "full maintenance").Release()
		})
	}
}
