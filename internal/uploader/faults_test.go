package uploader_test

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/ferry-backup/ferry/internal/repository"
	"github.com/ferry-backup/ferry/internal/repository/repotest"
	"github.com/ferry-backup/ferry/internal/repository/repotest/faults3"
	"github.com/ferry-backup/ferry/internal/uploader"
)

// The fault tier of the data path: backups, restores, maintenance and password changes against
// the real S3 server behind a fault-injecting proxy (repotest.FaultyS3). Durations are logged
// (go test -v) and bounded only generously: the tests assert that operations end, not how fast.

// faultBound is how long an operation under faults may run before the test calls it hung.
const faultBound = 2 * time.Minute

// lockClaims is the key prefix of the repository lock's claims, which faults leave alone.
const lockClaims = "ferry/ferry-lock-claim."

// faultyLocation returns a fresh bucket behind a proxy; stall is config.stallTimeout ("" for
// the default).
func faultyLocation(t *testing.T, stall string) (repository.Location, *faults3.Proxy) {
	t.Helper()
	loc, p := repotest.FaultyS3(t)
	if stall != "" {
		loc.Config["stallTimeout"] = stall
	}
	return loc, p
}

// timed runs f and fails the test if it runs past bound.
func timed(t *testing.T, bound time.Duration, f func() error) (time.Duration, error) {
	t.Helper()
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- f() }()
	timer := time.NewTimer(bound)
	defer timer.Stop()
	select {
	case err := <-done:
		return time.Since(start), err
	case <-timer.C:
		t.Fatalf("still running after %s", bound)
		return 0, nil
	}
}

// requireRestores restores snapshotID through a new handle, as another process would, and
// compares it with src byte for byte.
func requireRestores(t *testing.T, loc repository.Location, password, snapshotID, src string) {
	t.Helper()
	rep := openRepoWith(t, loc, password, func(o *repository.Options) { o.NoCache = true })
	dst := t.TempDir()
	if _, err := uploader.Restore(t.Context(), rep, snapshotID, dst, uploader.RestoreOptions{}); err != nil {
		t.Fatalf("restore %s: %v", snapshotID, err)
	}
	requireSameTree(t, src, dst)
}

func randomFiles(t *testing.T, n int, size int64, seed uint64) string {
	t.Helper()
	dir := t.TempDir()
	for i := range n {
		writeRandom(t, filepath.Join(dir, "f", string(rune('a'+i%26))+string(rune('a'+i/26))+".bin"), size, seed+uint64(i))
	}
	return dir
}

func TestBackupRetriesInjectedServerErrors(t *testing.T) {
	loc, p := faultyLocation(t, "")
	rep := openRepo(t, loc, "pw")
	src := t.TempDir()
	makeTree(t, src, 8<<20)
	p.Add(faults3.Fault{Kind: faults3.Error, Method: http.MethodPut, Every: 2})
	p.Add(faults3.Fault{Kind: faults3.Error, Status: http.StatusServiceUnavailable, Every: 3, ExceptKeyPrefix: lockClaims})
	d, err := timed(t, faultBound, func() error {
		res, err := uploader.Backup(t.Context(), rep, src, uploader.BackupOptions{Source: "/app/data"})
		if err == nil {
			p.Clear()
			requireRestores(t, loc, "pw", res.SnapshotID, src)
		}
		return err
	})
	c := p.Counts()
	t.Logf("backup with 500s on every 2nd PUT and 503s on every 3rd other request: %s, %v requests, %d faults injected",
		d, c.Requests, c.Injected[faults3.Error])
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	if c.Injected[faults3.Error] == 0 {
		t.Fatal("no fault was injected")
	}
}

func TestBackupAgainstASilentEndpointEnds(t *testing.T) {
	tests := []struct {
		name string
		// stall is the location's stall timeout.
		stall string
		// ctx returns the backup's context once the endpoint went silent.
		ctx     func(context.Context, *faults3.Proxy) context.Context
		wantErr func(error) bool
	}{
		{"canceled", "10m", func(parent context.Context, p *faults3.Proxy) context.Context {
			ctx, cancel := context.WithCancel(parent)
			go func() {
				waitHeld(p)
				cancel()
			}()
			return ctx
		}, func(err error) bool { return errors.Is(err, uploader.ErrCanceled) && errors.Is(err, context.Canceled) }},
		{"deadline", "10m", func(parent context.Context, _ *faults3.Proxy) context.Context {
			ctx, cancel := context.WithTimeout(parent, 5*time.Second)
			context.AfterFunc(parent, cancel)
			return ctx
		}, func(err error) bool {
			return errors.Is(err, uploader.ErrCanceled) && errors.Is(err, context.DeadlineExceeded)
		}},
		{"stalled, no deadline", "1s", func(parent context.Context, _ *faults3.Proxy) context.Context { return parent },
			func(err error) bool { return errors.Is(err, repository.ErrStalled) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			loc, p := faultyLocation(t, tt.stall)
			rep, err := repository.Open(t.Context(), repository.Options{Location: loc, Password: "pw", WorkDir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			src := randomFiles(t, 12, 4<<20, 100)
			p.Add(faults3.Fault{Kind: faults3.Drop, Method: http.MethodPut, ExceptKeyPrefix: lockClaims})
			ctx := tt.ctx(t.Context(), p)
			d, err := timed(t, faultBound, func() error {
				_, err := uploader.Backup(ctx, rep, src, uploader.BackupOptions{Parallel: 2, FlushTimeout: 3 * time.Second})
				return err
			})
			t.Logf("backup against a silent endpoint (stall timeout %s, flush timeout 3s) ended after %s: %v", tt.stall, d, err)
			if !tt.wantErr(err) {
				t.Errorf("err = %v", err)
			}
			// Kopia waits in Close for its own log writes, which ignore every context.
			closeCtx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			d, err = timed(t, faultBound, func() error { return rep.Close(closeCtx) })
			t.Logf("closing the repository after it took %s: %v", d, err)
		})
	}
}

// waitHeld waits until the proxy holds a request: the endpoint has gone silent on someone.
func waitHeld(p *faults3.Proxy) {
	for deadline := time.Now().Add(faultBound); p.Held() == 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond) // polling a condition with a deadline
	}
}

func TestRestoreFromASilentEndpointEndsWhenCanceled(t *testing.T) {
	loc, p := faultyLocation(t, "10m")
	rep := openRepo(t, loc, "pw")
	src := randomFiles(t, 6, 4<<20, 200)
	res, err := uploader.Backup(t.Context(), rep, src, uploader.BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	reader := openRepoWith(t, loc, "pw", func(o *repository.Options) { o.NoCache = true })
	p.Add(faults3.Fault{Kind: faults3.Drop, Method: http.MethodGet, KeyPrefix: "ferry/p"})
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		waitHeld(p)
		cancel()
	}()
	d, err := timed(t, faultBound, func() error {
		_, err := uploader.Restore(ctx, reader, res.SnapshotID, t.TempDir(), uploader.RestoreOptions{})
		return err
	})
	t.Logf("restore from a silent endpoint ended %s after it started: %v", d, err)
	if !errors.Is(err, uploader.ErrCanceled) {
		t.Fatalf("err = %v, want ErrCanceled", err)
	}
}
