package uploader_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ferry-backup/ferry/internal/repository"
	"github.com/ferry-backup/ferry/internal/repository/repotest/faults3"
	"github.com/ferry-backup/ferry/internal/uploader"
)

func TestFullBucketFailsClearlyAndLeavesTheRepositoryUsable(t *testing.T) {
	loc, p := faultyLocation(t, "")
	rep := openRepo(t, loc, "pw")
	first := t.TempDir()
	makeTree(t, first, 0)
	before, err := uploader.Backup(t.Context(), rep, first, uploader.BackupOptions{Source: "/app/data"})
	if err != nil {
		t.Fatal(err)
	}
	second := randomFiles(t, 6, 2<<20, 300)
	p.Add(faults3.Fault{Kind: faults3.Full, ExceptKeyPrefix: lockClaims})
	d, err := timed(t, faultBound, func() error {
		_, err := uploader.Backup(t.Context(), rep, second, uploader.BackupOptions{Source: "/app/data", FlushTimeout: 5 * time.Second})
		return err
	})
	t.Logf("backup into a full bucket failed after %s (%d PUTs refused): %v", d, p.Counts().Injected[faults3.Full], err)
	if err == nil || !strings.Contains(err.Error(), "free drive threshold") {
		t.Fatalf("err = %v, want the server's full-bucket message", err)
	}

	p.Clear()
	after, err := uploader.Backup(t.Context(), openRepo(t, loc, "pw"), second, uploader.BackupOptions{Source: "/app/data"})
	if err != nil {
		t.Fatalf("backup once the bucket has room again: %v", err)
	}
	requireRestores(t, loc, "pw", before.SnapshotID, first)
	requireRestores(t, loc, "pw", after.SnapshotID, second)
}

func TestMaintenanceUnderFaultsEndsAndLeavesTheRepositoryConsistent(t *testing.T) {
	tests := []struct {
		name   string
		faults []faults3.Fault
		// timeout bounds the maintenance run (0: none).
		timeout time.Duration
	}{
		// The first write (Kopia's maintenance schedule) lands, so the faults hit the work.
		{"writes and deletes dropped, deadline", []faults3.Fault{
			{Kind: faults3.Drop, Method: http.MethodPut, ExceptKeyPrefix: lockClaims, After: 1},
			{Kind: faults3.Drop, Method: http.MethodDelete, ExceptKeyPrefix: lockClaims},
		}, 5 * time.Second},
		{"writes refused, bucket full", []faults3.Fault{{Kind: faults3.Full, ExceptKeyPrefix: lockClaims, After: 1}}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			loc, p := faultyLocation(t, "10m")
			rep := openRepo(t, loc, "pw")
			keep, drop := randomFiles(t, 2, 1<<20, 400), randomFiles(t, 4, 2<<20, 500)
			kept, err := uploader.Backup(t.Context(), rep, keep, uploader.BackupOptions{Source: "/keep"})
			if err != nil {
				t.Fatal(err)
			}
			dropped, err := uploader.Backup(t.Context(), rep, drop, uploader.BackupOptions{Source: "/drop"})
			if err != nil {
				t.Fatal(err)
			}
			if err := uploader.Delete(t.Context(), rep, dropped.SnapshotID); err != nil {
				t.Fatal(err)
			}
			for _, f := range tt.faults {
				p.Add(f)
			}
			ctx := t.Context()
			if tt.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.timeout)
				defer cancel()
			}
			var rec repository.MaintenanceRecord
			d, err := timed(t, faultBound, func() error {
				var err error
				rec, err = rep.Maintain(ctx, repository.MaintenanceFull, repository.MaintenanceOptions{UnsafeNoSafetyMargins: true})
				return err
			})
			t.Logf("full maintenance under faults ended after %s (%v faults): %v", d, p.Counts().Injected, err)
			if err == nil || rec.Succeeded || rec.Message == "" {
				t.Fatalf("maintenance = %+v, %v; want a failure with a message", rec, err)
			}

			p.Clear()
			again := openRepo(t, loc, "pw")
			if rec, err := again.Maintain(t.Context(), repository.MaintenanceFull, repository.MaintenanceOptions{UnsafeNoSafetyMargins: true}); err != nil {
				t.Fatalf("maintenance without faults: %+v, %v", rec, err)
			}
			snaps, err := uploader.List(t.Context(), again, nil, false)
			if err != nil || len(snaps) != 1 || snaps[0].ID != kept.SnapshotID {
				t.Fatalf("snapshots = %+v (%v), want only %s", snaps, err, kept.SnapshotID)
			}
			requireRestores(t, loc, "pw", kept.SnapshotID, keep)
		})
	}
}

func TestPasswordChangeUnderFaults(t *testing.T) {
	tests := []struct {
		name  string
		fault faults3.Fault
		// timeout bounds the change (0: none).
		timeout time.Duration
		// interrupted: the first format blob landed and the second did not.
		interrupted bool
	}{
		{"first blob refused", faults3.Fault{Kind: faults3.Full, KeyPrefix: "ferry/kopia.blobcfg"}, 0, false},
		{"first blob dropped, deadline", faults3.Fault{Kind: faults3.Drop, Method: http.MethodPut, KeyPrefix: "ferry/kopia.blobcfg"}, 3 * time.Second, false},
		{"second blob refused", faults3.Fault{Kind: faults3.Full, KeyPrefix: "ferry/kopia.repository"}, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			loc, p := faultyLocation(t, "10m")
			rep := openRepo(t, loc, "old")
			src := t.TempDir()
			makeTree(t, src, 0)
			res, err := uploader.Backup(t.Context(), rep, src, uploader.BackupOptions{})
			if err != nil {
				t.Fatal(err)
			}
			p.Add(tt.fault)
			ctx := t.Context()
			if tt.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.timeout)
				defer cancel()
			}
			d, err := timed(t, faultBound, func() error { return rep.ChangePassword(ctx, "new") })
			t.Logf("password change under faults ended after %s: %v", d, err)
			if err == nil {
				t.Fatal("the password change succeeded under faults")
			}
			p.Clear()

			opts := repository.Options{Location: loc, Password: "old", WorkDir: t.TempDir(), ConnectTimeout: 30 * time.Second}
			old, err := repository.Open(t.Context(), opts)
			switch {
			case tt.interrupted:
				if !errors.Is(err, repository.ErrInterruptedRekey) {
					t.Fatalf("open with the old password: %v, want ErrInterruptedRekey", err)
				}
				if ok, err := repository.RepairInterruptedRekey(t.Context(), opts, "old", "new"); err != nil || !ok {
					t.Fatalf("repair = %v, %v", ok, err)
				}
			case err != nil:
				t.Fatalf("the old password no longer opens the repository: %v", err)
			default:
				_ = old.Close(t.Context())
				opts.Password = "new"
				if _, err := repository.Open(t.Context(), opts); !errors.Is(err, repository.ErrWrongPassword) {
					t.Fatalf("the new password: %v, want ErrWrongPassword", err)
				}
			}
			requireRestores(t, loc, "old", res.SnapshotID, src)
			if err := openRepo(t, loc, "old").ChangePassword(t.Context(), "new"); err != nil {
				t.Fatalf("password change without faults: %v", err)
			}
			requireRestores(t, loc, "new", res.SnapshotID, src)
		})
	}
}

// TestKilledBackupResumesFromItsCheckpoint interrupts a backup the way a killed process would:
// after it saved a periodic checkpoint, the endpoint goes silent (nothing more lands) and the
// backup's context ends. A second run, as a restarted process, resumes from the checkpoint.
func TestKilledBackupResumesFromItsCheckpoint(t *testing.T) {
	loc, p := faultyLocation(t, "2s")
	const files, size = 48, 4 << 20
	src := randomFiles(t, files, size, 600)
	rep, err := repository.Open(t.Context(), repository.Options{Location: loc, Password: "pw", WorkDir: t.TempDir(),
		Identity: repository.Identity{Hostname: "node-a", Username: "ferry"}})
	if err != nil {
		t.Fatal(err)
	}
	watcher := openRepoWith(t, loc, "pw")
	// Slow the upload down so that it is still running well after its first checkpoint, however
	// fast the machine: 192 MiB is about 10 packs, written 2 at a time (Parallel), each a second
	// late — 5 s at the least, where the checkpoint (after 1 s, its flush a pack's delay) shows
	// after about 2 s.
	p.Add(faults3.Fault{Kind: faults3.Delay, Method: http.MethodPut, KeyPrefix: "ferry/p", Delay: time.Second})
	ctx, kill := context.WithCancel(t.Context())
	defer kill()
	go func() {
		// Kill the backup once another process sees its checkpoint.
		for deadline := time.Now().Add(faultBound); time.Now().Before(deadline) && ctx.Err() == nil; {
			if watcher.Refresh(ctx) == nil {
				if snaps, err := uploader.List(ctx, watcher, nil, true); err == nil && len(snaps) > 0 {
					p.Clear()
					p.Add(faults3.Fault{Kind: faults3.Drop, ExceptKeyPrefix: lockClaims})
					kill()
					return
				}
			}
			time.Sleep(100 * time.Millisecond) // polling a condition with a deadline
		}
	}()
	opts := uploader.BackupOptions{Source: "/app/data", Parallel: 2, CheckpointInterval: time.Second, FlushTimeout: 2 * time.Second}
	d, err := timed(t, faultBound, func() error {
		_, err := uploader.Backup(ctx, rep, src, opts)
		return err
	})
	firstPut := p.ForwardedPutBytes()
	t.Logf("first run killed after %s, %d bytes uploaded: %v", d, firstPut, err)
	if !errors.Is(err, uploader.ErrCanceled) {
		t.Fatalf("first run: err = %v, want ErrCanceled", err)
	}
	closeCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = rep.Close(closeCtx) // the endpoint is silent: a killed process never closes

	p.Clear()
	p.ResetCounts()
	again := openRepoWith(t, loc, "pw")
	res, err := uploader.Backup(t.Context(), again, src, uploader.BackupOptions{Source: "/app/data", Parallel: 2})
	if err != nil {
		t.Fatalf("second run: %v", err)
	}
	secondPut := p.ForwardedPutBytes()
	t.Logf("source %d bytes; first run uploaded %d bytes through the proxy; second run uploaded %d (%.0f%% of the source), "+
		"its stats: hashed %d, cached %d, uploaded %d", int64(files*size), firstPut, secondPut,
		100*float64(secondPut)/float64(files*size), res.Stats.HashedBytes, res.Stats.CachedBytes, res.Stats.UploadedBytes)
	if res.Stats.CachedBytes == 0 || secondPut >= files*size {
		t.Errorf("the second run did not resume: cached %d bytes, uploaded %d of %d", res.Stats.CachedBytes, secondPut, files*size)
	}
	requireRestores(t, loc, "pw", res.SnapshotID, src)
}
