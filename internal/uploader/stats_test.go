package uploader_test

import (
	"path/filepath"
	"testing"

	"github.com/ferry-backup/ferry/internal/repository"
	"github.com/ferry-backup/ferry/internal/repository/repotest"
	"github.com/ferry-backup/ferry/internal/uploader"
)

// TestStatsCountDeduplicationAndDeletedData measures a repository through its life: two
// identical directories stored once, a deleted snapshot whose data full maintenance first marks
// deleted (reclaimable) and later drops.
func TestStatsCountDeduplicationAndDeletedData(t *testing.T) {
	rep := openRepo(t, repotest.Filesystem(t), "pw")
	a, b, drop := t.TempDir(), t.TempDir(), t.TempDir()
	writeRandom(t, filepath.Join(a, "f.bin"), 4<<20, 1)
	writeRandom(t, filepath.Join(b, "f.bin"), 4<<20, 1)
	writeRandom(t, filepath.Join(drop, "d.bin"), 2<<20, 2)
	for src, dir := range map[string]string{"/a": a, "/b": b} {
		if _, err := uploader.Backup(t.Context(), rep, dir, uploader.BackupOptions{Source: src}); err != nil {
			t.Fatal(err)
		}
	}
	stats := measure(t, rep)
	if stats.Snapshots != 2 || stats.LogicalBytes != 8<<20 {
		t.Errorf("snapshots %d, logical bytes %d; want 2 and %d", stats.Snapshots, stats.LogicalBytes, 8<<20)
	}
	if r := stats.DedupRatio(); r < 1.9 || r > 2.01 {
		t.Errorf("dedup ratio = %.3f, want about 2 (%+v)", r, stats)
	}
	if stats.Blobs[repository.BlobPack] == 0 || stats.Blobs[repository.BlobMetadataPack] == 0 ||
		stats.Blobs[repository.BlobIndex] == 0 || stats.Blobs[repository.BlobOther] == 0 {
		t.Errorf("blobs = %v, want every kind", stats.Blobs)
	}
	var sum int64
	for _, n := range stats.BlobBytes {
		sum += n
	}
	if sum != stats.SizeBytes || stats.DeletedContents != 0 || stats.Contents == 0 || stats.ReclaimableBytes() > 64<<10 {
		t.Errorf("stats = %+v", stats)
	}

	dropped, err := uploader.Backup(t.Context(), rep, drop, uploader.BackupOptions{Source: "/drop"})
	if err != nil {
		t.Fatal(err)
	}
	if err := uploader.Delete(t.Context(), rep, dropped.SnapshotID); err != nil {
		t.Fatal(err)
	}
	if _, err := rep.Maintain(t.Context(), repository.MaintenanceQuick, repository.MaintenanceOptions{}); err != nil {
		t.Fatal(err)
	}
	quick := measure(t, rep)
	// Quick maintenance finds no unreferenced data: the 2 MiB still count as live.
	if quick.Snapshots != 2 || quick.LogicalBytes != 8<<20 || quick.DeletedBytes != 0 ||
		quick.LiveBytes < stats.LiveBytes+2<<20 || quick.ReclaimableBytes() > 64<<10 {
		t.Errorf("after deleting a snapshot and quick maintenance: %+v", quick)
	}

	// Without safety margins, full maintenance marks the data deleted in one run and drops it in
	// a later one (timestamps of one-second resolution, hence the runs in different seconds).
	full := func() repository.Stats {
		waitForNextSecond()
		if _, err := rep.Maintain(t.Context(), repository.MaintenanceFull, repository.MaintenanceOptions{UnsafeNoSafetyMargins: true}); err != nil {
			t.Fatal(err)
		}
		return measure(t, rep)
	}
	marked := full()
	if marked.DeletedBytes < 2<<20 || marked.DeletedContents == 0 || marked.ReclaimableBytes() < 2<<20 ||
		marked.LiveBytes > stats.LiveBytes+64<<10 {
		t.Errorf("after one full maintenance: %+v, want the dropped snapshot's 2 MiB marked deleted", marked)
	}
	// Later runs drop the deleted contents from the index; their bytes stay reclaimable until
	// their pack is deleted or rewritten.
	full()
	after := full()
	if after.DeletedBytes >= 2<<20 || after.LiveBytes > stats.LiveBytes+64<<10 ||
		after.ReclaimableBytes() != after.PackBytes()-after.LiveBytes {
		t.Errorf("after three full maintenance runs: %+v", after)
	}
	t.Logf("after three full maintenance runs: %d pack bytes, %d live, %d reclaimable", after.PackBytes(), after.LiveBytes, after.ReclaimableBytes())
	if r := after.DedupRatio(); r < 1.9 || r > 2.01 {
		t.Errorf("dedup ratio = %.3f after maintenance, want about 2", r)
	}
}

func measure(t *testing.T, rep *repository.Repository) repository.Stats {
	t.Helper()
	s, err := rep.Stats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return s
}
