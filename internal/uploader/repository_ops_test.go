package uploader_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferry-backup/ferry/internal/repository"
	"github.com/ferry-backup/ferry/internal/repository/repotest"
	"github.com/ferry-backup/ferry/internal/uploader"
)

// These tests exercise repository operations that need snapshots in the repository.

func TestFullMaintenanceReclaimsADeletedSnapshot(t *testing.T) {
	for _, b := range repotest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			rep := openRepo(t, b.New(t), "pw")

			keep, drop := t.TempDir(), t.TempDir()
			writeRandom(t, filepath.Join(keep, "k.bin"), 2<<20, 1)
			writeRandom(t, filepath.Join(drop, "d.bin"), 16<<20, 2)
			if _, err := uploader.Backup(t.Context(), rep, keep, uploader.BackupOptions{Source: "/keep"}); err != nil {
				t.Fatal(err)
			}
			dropped, err := uploader.Backup(t.Context(), rep, drop, uploader.BackupOptions{Source: "/drop"})
			if err != nil {
				t.Fatal(err)
			}
			quick, err := rep.Maintain(t.Context(), repository.MaintenanceQuick, repository.MaintenanceOptions{})
			if err != nil || !quick.Succeeded || !strings.Contains(quick.Message, "quick maintenance") {
				t.Fatalf("quick maintenance = %+v, %v", quick, err)
			}
			if err := uploader.Delete(t.Context(), rep, dropped.SnapshotID); err != nil {
				t.Fatal(err)
			}
			// Kopia keeps unreferenced data for a day or more so that snapshots running at the
			// same time stay safe; the test drops those margins. It marks data deleted in one run
			// and drops it in a later one, comparing timestamps of one-second resolution, hence
			// the runs in different seconds.
			var records []repository.MaintenanceRecord
			for range 3 {
				waitForNextSecond()
				rec, err := rep.Maintain(t.Context(), repository.MaintenanceFull, repository.MaintenanceOptions{UnsafeNoSafetyMargins: true})
				if err != nil {
					t.Fatalf("full maintenance: %v", err)
				}
				records = append(records, rec)
			}
			last := records[len(records)-1]
			if last.StorageBytesAfter > 8<<20 {
				for _, r := range records {
					t.Logf("%s", r.Message)
				}
				t.Fatalf("storage holds %d bytes after deleting the 16 MiB snapshot", last.StorageBytesAfter)
			}
			if !last.Succeeded || last.End.Before(last.Start) || last.Mode != repository.MaintenanceFull {
				t.Errorf("record = %+v", last)
			}
		})
	}
}

func TestPasswordChangeKeepsSnapshotsRestorable(t *testing.T) {
	for _, b := range repotest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			loc := b.New(t)
			rep := openRepo(t, loc, "old-password")
			src := t.TempDir()
			makeTree(t, src, 0)
			res, err := uploader.Backup(t.Context(), rep, src, uploader.BackupOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if err := rep.ChangePassword(t.Context(), "new-password"); err != nil {
				t.Fatalf("change password: %v", err)
			}
			_, err = repository.Open(t.Context(), repository.Options{Location: loc, Password: "old-password", WorkDir: t.TempDir()})
			if !errors.Is(err, repository.ErrWrongPassword) {
				t.Fatalf("old password: err = %v, want ErrWrongPassword", err)
			}
			fresh := openRepo(t, loc, "new-password")
			dst := t.TempDir()
			if _, err := uploader.Restore(t.Context(), fresh, res.SnapshotID, dst, uploader.RestoreOptions{}); err != nil {
				t.Fatalf("restore with the new password: %v", err)
			}
			requireSameTree(t, src, dst)
		})
	}
}

func TestCorruptedPackIsDetectedOnRestore(t *testing.T) {
	loc := repotest.Filesystem(t)
	rep := openRepo(t, loc, "pw")
	src := t.TempDir()
	writeRandom(t, filepath.Join(src, "data.bin"), 4<<20, 3)
	res, err := uploader.Backup(t.Context(), rep, src, uploader.BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	corruptPacks(t, loc)
	fresh := openRepo(t, loc, "pw") // no cache that could hide the damage
	_, err = uploader.Restore(t.Context(), fresh, res.SnapshotID, t.TempDir(), uploader.RestoreOptions{})
	if err == nil {
		t.Fatal("restore of a corrupted pack succeeded")
	}
	t.Logf("restore reported: %v", err)
}

// corruptPacks flips bytes in the middle of every pack blob of the filesystem repository at loc.
func corruptPacks(t testing.TB, loc repository.Location) {
	t.Helper()
	corrupted := 0
	root := filepath.Join(loc.Config["path"], loc.Bucket, loc.Prefix)
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		rel, _ := filepath.Rel(root, p)
		if err != nil || d.IsDir() || !strings.HasPrefix(rel, "p") { // pack blobs, sharded into directories
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for i := len(data) / 3; i < len(data)/3+64 && i < len(data); i++ {
			data[i] ^= 0xff
		}
		corrupted++
		return os.WriteFile(p, data, 0o600)
	})
	if err != nil || corrupted == 0 {
		t.Fatalf("corrupt pack blobs: %d corrupted, %v", corrupted, err)
	}
}

func TestRestoreNeverWritesOutsideTheTarget(t *testing.T) {
	rep := openRepo(t, repotest.Filesystem(t), "pw")
	src := t.TempDir()
	if err := os.MkdirAll(filepath.Join(src, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "sub", "payload"), []byte("from the snapshot"), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := uploader.Backup(t.Context(), rep, src, uploader.BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// A volume whose "sub" was replaced by a symlink to a directory outside it.
	outside := t.TempDir()
	for _, keep := range []bool{true, false} {
		target := t.TempDir()
		if err := os.Symlink(outside, filepath.Join(target, "sub")); err != nil {
			t.Fatal(err)
		}
		_, err := uploader.Restore(t.Context(), rep, res.SnapshotID, target, uploader.RestoreOptions{KeepExisting: keep})
		if keep && !errors.Is(err, uploader.ErrOutsideTarget) {
			t.Errorf("keep existing: err = %v, want ErrOutsideTarget", err)
		}
		if !keep {
			if err != nil {
				t.Fatalf("overwrite: %v", err)
			}
			if st, err := os.Lstat(filepath.Join(target, "sub")); err != nil || !st.IsDir() {
				t.Errorf("the symlink was not replaced by the snapshot's directory: %v", err)
			}
		}
		if entries, _ := os.ReadDir(outside); len(entries) != 0 {
			t.Fatalf("restore wrote outside the target: %v", entries)
		}
	}
}

func TestRestoreCanBeCanceled(t *testing.T) {
	rep := openRepo(t, repotest.Filesystem(t), "pw")
	src := t.TempDir()
	for i := range 30 {
		writeRandom(t, filepath.Join(src, string(rune('a'+i%26))+string(rune('a'+i/26))), 2<<20, uint64(i))
	}
	res, err := uploader.Backup(t.Context(), rep, src, uploader.BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := t.Context(), func() {}
	ctx, cancel = contextWithCancel(ctx)
	start := time.Now()
	_, err = uploader.Restore(ctx, rep, res.SnapshotID, t.TempDir(), uploader.RestoreOptions{
		Parallel: 1, ProgressInterval: 10 * time.Millisecond,
		Progress: func(p uploader.Progress) {
			if p.BytesDone > 0 {
				cancel()
			}
		},
	})
	if !errors.Is(err, uploader.ErrCanceled) {
		t.Fatalf("err = %v after %s, want ErrCanceled", err, time.Since(start))
	}
}

// waitForNextSecond returns once the wall clock has moved into the next second.
func waitForNextSecond() {
	now := time.Now()
	time.Sleep(now.Truncate(time.Second).Add(time.Second).Sub(now))
}
