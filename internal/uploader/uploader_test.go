package uploader_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ferry-backup/ferry/internal/repository"
	"github.com/ferry-backup/ferry/internal/repository/repotest"
	"github.com/ferry-backup/ferry/internal/uploader"
)

func TestRoundTripIsIdentical(t *testing.T) {
	for _, b := range repotest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			src := t.TempDir()
			makeTree(t, src, 1<<30)
			loc := b.New(t)
			rep := openRepo(t, loc, "pw")
			var calls atomic.Int64
			var last uploader.Progress
			res, err := uploader.Backup(t.Context(), rep, src, uploader.BackupOptions{
				Source: "/app/data", Tags: map[string]string{"backup": "b1", "pvc": "data"},
				Progress: func(p uploader.Progress) { calls.Add(1); last = p },
			})
			if err != nil {
				t.Fatalf("backup: %v", err)
			}
			if res.SnapshotID == "" || res.Stats.Files < 15 || res.Stats.Bytes < 1<<30 {
				t.Fatalf("result = %+v", res)
			}
			if calls.Load() == 0 || last.BytesDone < res.Stats.Bytes || last.FilesDone != res.Stats.Files || last.TotalBytes != last.BytesDone {
				t.Errorf("final progress %+v does not match the stats %+v (%d calls)", last, res.Stats, calls.Load())
			}
			dst := filepath.Join(t.TempDir(), "restore")
			restorer := openRepoWith(t, loc, "pw", func(o *repository.Options) { o.NoCache = true })
			st, err := uploader.Restore(t.Context(), restorer, res.SnapshotID, dst, uploader.RestoreOptions{WriteSparseFiles: true})
			if err != nil {
				t.Fatalf("restore: %v", err)
			}
			if st.Bytes != res.Stats.Bytes {
				t.Errorf("restored %d bytes, backed up %d", st.Bytes, res.Stats.Bytes)
			}
			requireSameTree(t, src, dst)
			if got := allocatedBytes(t, filepath.Join(dst, "sparse.img")); got > 1<<20 {
				t.Errorf("sparse file restored with %d bytes allocated", got)
			}
		})
	}
}

func TestIdenticalDirectoriesAreStoredOnce(t *testing.T) {
	for _, b := range repotest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			one, two := t.TempDir(), t.TempDir()
			for i := range 8 {
				name := filepath.Join("d", string(rune('a'+i))+".bin")
				writeRandom(t, filepath.Join(one, name), 2<<20, uint64(i))
				writeRandom(t, filepath.Join(two, name), 2<<20, uint64(i))
			}
			rep := openRepo(t, b.New(t), "pw")
			first, err := uploader.Backup(t.Context(), rep, one, uploader.BackupOptions{Source: "/ns1/pvc"})
			if err != nil {
				t.Fatal(err)
			}
			second, err := uploader.Backup(t.Context(), rep, two, uploader.BackupOptions{Source: "/ns2/pvc"})
			if err != nil {
				t.Fatal(err)
			}
			if first.Stats.UploadedBytes < 16<<20 {
				t.Errorf("first backup uploaded %d bytes, want at least the 16 MiB of data", first.Stats.UploadedBytes)
			}
			if second.Stats.UploadedBytes > 64<<10 {
				t.Errorf("second, identical backup uploaded %d bytes, want only metadata (< 64 KiB)", second.Stats.UploadedBytes)
			}
		})
	}
}

func TestSmallChangeUploadsOnlyTheChange(t *testing.T) {
	for _, b := range repotest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			src := t.TempDir()
			for i := range 100 {
				writeRandom(t, filepath.Join(src, "f", string(rune('A'+i/26))+string(rune('a'+i%26))), 1<<20, uint64(i))
			}
			rep := openRepo(t, b.New(t), "pw")
			first, err := uploader.Backup(t.Context(), rep, src, uploader.BackupOptions{Source: "/app/data"})
			if err != nil {
				t.Fatal(err)
			}
			writeRandom(t, filepath.Join(src, "f", "Aa"), 1<<20, 1000) // 1% of the bytes change
			second, err := uploader.Backup(t.Context(), rep, src, uploader.BackupOptions{Source: "/app/data"})
			if err != nil {
				t.Fatal(err)
			}
			if second.ParentID != first.SnapshotID {
				t.Errorf("parent = %q, want the first snapshot %q", second.ParentID, first.SnapshotID)
			}
			if second.Stats.HashedBytes != 1<<20 {
				t.Errorf("read %d bytes, want only the changed 1 MiB", second.Stats.HashedBytes)
			}
			if up := second.Stats.UploadedBytes; up < 1<<20 || up > 3<<20/2 {
				t.Errorf("uploaded %d bytes, want about the changed 1 MiB", up)
			}
		})
	}
}

func TestCanceledBackupResumesAndLeavesTheRepositoryConsistent(t *testing.T) {
	for _, b := range repotest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			src := t.TempDir()
			for i := range 40 {
				writeRandom(t, filepath.Join(src, "d", string(rune('a'+i%26))+string(rune('a'+i/26))+".bin"), 4<<20, uint64(i))
			}
			loc := b.New(t)
			rep := openRepo(t, loc, "pw")
			ctx, cancel := context.WithCancel(t.Context())
			_, err := uploader.Backup(ctx, rep, src, uploader.BackupOptions{
				Source: "/app/data", Parallel: 1,
				Progress: func(p uploader.Progress) {
					if p.BytesDone > 8<<20 {
						cancel()
					}
				},
				ProgressInterval: 10 * 1e6, // 10ms
			})
			cancel()
			if !errors.Is(err, uploader.ErrCanceled) || !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v, want ErrCanceled wrapping context.Canceled", err)
			}
			done, err := uploader.List(t.Context(), rep, nil, false)
			if err != nil || len(done) != 0 {
				t.Fatalf("complete snapshots after cancel = %v (%v), want none", done, err)
			}
			withCheckpoints, err := uploader.List(t.Context(), rep, nil, true)
			if err != nil || len(withCheckpoints) != 1 || !withCheckpoints[0].Incomplete {
				t.Fatalf("snapshots with checkpoints = %+v (%v), want one checkpoint", withCheckpoints, err)
			}

			again := openRepo(t, loc, "pw") // as a restarted process
			res, err := uploader.Backup(t.Context(), again, src, uploader.BackupOptions{Source: "/app/data"})
			if err != nil {
				t.Fatalf("re-run: %v", err)
			}
			if res.Stats.CachedBytes == 0 {
				t.Error("the re-run re-read everything; it should resume from the checkpoint")
			}
			dst := t.TempDir()
			if _, err := uploader.Restore(t.Context(), again, res.SnapshotID, dst, uploader.RestoreOptions{}); err != nil {
				t.Fatal(err)
			}
			requireSameTree(t, src, dst)
		})
	}
}

func TestConcurrentWritersShareOneRepository(t *testing.T) {
	for _, b := range repotest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			loc := b.New(t)
			openRepo(t, loc, "pw") // create it once
			var wg sync.WaitGroup
			ids := make([]string, 3)
			srcs := make([]string, 3)
			errs := make([]error, 3)
			for i := range 3 {
				srcs[i] = t.TempDir()
				writeRandom(t, filepath.Join(srcs[i], "data.bin"), 8<<20, uint64(100+i))
				writeRandom(t, filepath.Join(srcs[i], "shared.bin"), 4<<20, 7)
				rep := openRepo(t, loc, "pw") // one client per node-agent
				wg.Add(1)
				go func() {
					defer wg.Done()
					res, err := uploader.Backup(context.Background(), rep, srcs[i], uploader.BackupOptions{Source: "/ns/pvc-" + string(rune('a'+i))})
					ids[i], errs[i] = res.SnapshotID, err
				}()
			}
			wg.Wait()
			reader := openRepo(t, loc, "pw")
			for i := range 3 {
				if errs[i] != nil {
					t.Fatalf("writer %d: %v", i, errs[i])
				}
				dst := t.TempDir()
				if _, err := uploader.Restore(t.Context(), reader, ids[i], dst, uploader.RestoreOptions{}); err != nil {
					t.Fatalf("restore %d: %v", i, err)
				}
				requireSameTree(t, srcs[i], dst)
			}
		})
	}
}

func TestListAndDeleteByTags(t *testing.T) {
	rep := openRepo(t, repotest.Filesystem(t), "pw")
	src := t.TempDir()
	writeRandom(t, filepath.Join(src, "f"), 1024, 1)
	var ids []string
	for _, backup := range []string{"b1", "b2", "b1"} {
		res, err := uploader.Backup(t.Context(), rep, src, uploader.BackupOptions{Tags: map[string]string{"backup": backup}})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.SnapshotID)
	}
	b1, err := uploader.List(t.Context(), rep, map[string]string{"backup": "b1"}, false)
	if err != nil || len(b1) != 2 || b1[0].ID != ids[0] || b1[1].ID != ids[2] {
		t.Fatalf("b1 snapshots = %+v (%v)", b1, err)
	}
	if err := uploader.Delete(t.Context(), rep, ids[0], ids[2]); err != nil {
		t.Fatal(err)
	}
	all, err := uploader.List(t.Context(), rep, nil, false)
	if err != nil || len(all) != 1 || all[0].ID != ids[1] || all[0].Tags["backup"] != "b2" {
		t.Fatalf("after delete = %+v (%v)", all, err)
	}
	if err := uploader.Delete(t.Context(), rep, "kdeadbeef"); err == nil {
		t.Error("deleting an unknown snapshot succeeded")
	}
}

func TestBackupOfAMissingDirectoryFails(t *testing.T) {
	rep := openRepo(t, repotest.Filesystem(t), "pw")
	_, err := uploader.Backup(t.Context(), rep, filepath.Join(t.TempDir(), "gone"), uploader.BackupOptions{})
	if err == nil || !os.IsNotExist(errors.Unwrap(err)) && !errors.Is(err, os.ErrNotExist) {
		t.Logf("err = %v", err)
	}
	if err == nil {
		t.Fatal("backed up a directory that does not exist")
	}
}
