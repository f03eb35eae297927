package repository

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestLockMakesOpenWaitThenFail(t *testing.T) {
	loc := Location{Provider: ProviderFilesystem, Bucket: "b", Config: map[string]string{"path": t.TempDir()}}
	opts := Options{Location: loc, Password: "pw", WorkDir: t.TempDir()}
	r, err := Open(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(t.Context())
	release, err := r.lock.acquire(t.Context(), "maintenance@ferry", "full maintenance")
	if err != nil {
		t.Fatal(err)
	}

	opts.WorkDir, opts.LockCheckTimeout = t.TempDir(), 300*time.Millisecond
	start := time.Now()
	_, err = Open(t.Context(), opts)
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "full maintenance by maintenance@ferry") {
		t.Fatalf("err = %v, want ErrLocked naming the operation and holder", err)
	}
	if waited := time.Since(start); waited < 300*time.Millisecond {
		t.Errorf("gave up after %s, before the 300ms lock check timeout", waited)
	}
	if _, err := r.lock.acquire(t.Context(), "someone@else", "password change"); !errors.Is(err, ErrLocked) {
		t.Errorf("a second holder got the lock: %v", err)
	}

	release()
	r2, err := Open(t.Context(), opts)
	if err != nil {
		t.Fatalf("open after release: %v", err)
	}
	r2.Close(t.Context())
}

func TestExpiredLockIsIgnored(t *testing.T) {
	loc := Location{Provider: ProviderFilesystem, Bucket: "b", Config: map[string]string{"path": t.TempDir()}}
	st, err := loc.storage(t.Context(), true)
	if err != nil {
		t.Fatal(err)
	}
	crashed := &exclusiveLock{location: loc, now: func() time.Time { return time.Now().Add(-time.Hour) }}
	if err := crashed.write(t.Context(), st, &lockRecord{Holder: "dead@node", Operation: "full maintenance"}); err != nil {
		t.Fatal(err)
	}
	live := &exclusiveLock{location: loc}
	if err := live.waitFree(t.Context(), st, 0); err != nil {
		t.Fatalf("an hour-old lock still blocks: %v", err)
	}
}
