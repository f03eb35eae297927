package uploader_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ferry-backup/ferry/api/shared"
	"github.com/ferry-backup/ferry/internal/repository/repotest"
	"github.com/ferry-backup/ferry/internal/uploader"
)

// recorder keeps every progress report of one backup.
type recorder struct {
	mu      sync.Mutex
	reports []uploader.Progress
}

func (r *recorder) add(p uploader.Progress) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reports = append(r.reports, p)
}

var stageOrder = []shared.ProgressStage{shared.ProgressStageScanning, shared.ProgressStageUploading, shared.ProgressStageFlushing, shared.ProgressStageFinalizing}

// check verifies the invariants of the reports of a backup that completed with res: done never
// above total, done and the total never going back while the work runs, stages moving forward
// only, and the final report's totals being what was done.
func (r *recorder) check(t *testing.T, res uploader.BackupResult) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.reports) < 3 {
		t.Fatalf("%d progress reports, want several", len(r.reports))
	}
	var prev uploader.Progress
	for i, p := range r.reports {
		if p.BytesDone > p.TotalBytes || p.FilesDone > p.TotalFiles {
			t.Errorf("report %d: done %d bytes, %d files over total %d bytes, %d files", i, p.BytesDone, p.FilesDone, p.TotalBytes, p.TotalFiles)
		}
		if p.BytesDone < prev.BytesDone || p.FilesDone < prev.FilesDone || p.FilesHashed < prev.FilesHashed || p.BytesUploaded < prev.BytesUploaded {
			t.Errorf("report %d went back: %+v after %+v", i, p, prev)
		}
		if i < len(r.reports)-1 && (p.TotalBytes < prev.TotalBytes || p.TotalFiles < prev.TotalFiles) {
			t.Errorf("report %d: the total shrank while the backup ran: %d bytes, %d files after %d, %d", i, p.TotalBytes, p.TotalFiles, prev.TotalBytes, prev.TotalFiles)
		}
		if i > 0 && slices.Index(stageOrder, p.Stage) < slices.Index(stageOrder, prev.Stage) || !slices.Contains(stageOrder, p.Stage) {
			t.Errorf("report %d: stage %q after %q", i, p.Stage, prev.Stage)
		}
		prev = p
	}
	last := r.reports[len(r.reports)-1]
	if last.TotalBytes != last.BytesDone || last.TotalFiles != last.FilesDone || last.Estimated || last.Stage != shared.ProgressStageFinalizing {
		t.Errorf("final report %+v: want the totals equal to what was done, no estimate, stage Finalizing", last)
	}
	if last.BytesDone != res.Stats.HashedBytes+res.Stats.CachedBytes || last.BytesHashed != res.Stats.HashedBytes || last.BytesCached != res.Stats.CachedBytes ||
		last.FilesDone != res.Stats.Files || last.FilesHashed+last.FilesCached != last.FilesDone || last.BytesUploaded != res.Stats.UploadedBytes {
		t.Errorf("final report %+v does not add up to the stats %+v", last, res.Stats)
	}
}

// TestProgressInvariants backs a source up three times: the first with no parent (the source
// is scanned for an estimate while hashing runs), the second after it grew past the parent's size
// (the estimate is raised, never exceeded), the third after most of it was replaced by less (the parent's
// estimate is too big: it stays until the end, where the total becomes what was done).
func TestProgressInvariants(t *testing.T) {
	src := t.TempDir()
	for i := range 24 {
		writeRandom(t, filepath.Join(src, fmt.Sprintf("d%d", i%3), fmt.Sprintf("f%02d.bin", i)), 2<<20, uint64(500+i))
	}
	rep := openRepo(t, repotest.Filesystem(t), "pw")
	backup := func(name string) (*recorder, uploader.BackupResult) {
		t.Helper()
		rec := &recorder{}
		res, err := uploader.Backup(t.Context(), rep, src, uploader.BackupOptions{Source: "/app/data", Parallel: 1,
			ProgressInterval: 2 * time.Millisecond, Progress: rec.add})
		if err != nil {
			t.Fatalf("%s backup: %v", name, err)
		}
		t.Logf("%s backup: %d reports, first %+v, last %+v", name, len(rec.reports), rec.reports[0], rec.reports[len(rec.reports)-1])
		rec.check(t, res)
		return rec, res
	}

	first, _ := backup("first")
	for i, p := range first.reports {
		if p.Stage == shared.ProgressStageScanning && p.Estimated {
			t.Errorf("report %d of a backup without a parent: %+v: an estimate while scanning", i, p)
		}
	}

	for i := range 16 {
		writeRandom(t, filepath.Join(src, "new", fmt.Sprintf("g%02d.bin", i)), 2<<20, uint64(900+i))
	}
	grown, res := backup("grown")
	if p := grown.reports[0]; p.Stage != shared.ProgressStageUploading || !p.Estimated || p.TotalBytes != 24*(2<<20) || p.TotalFiles != 24 {
		t.Errorf("first report of a backup with a parent: %+v, want Uploading with the parent's size as the estimate", p)
	}
	if res.Stats.CachedBytes != 24*(2<<20) || res.Stats.HashedBytes != 16*(2<<20) {
		t.Errorf("grown backup stats %+v: want the old files cached, the new ones hashed", res.Stats)
	}

	for i := range 24 {
		if err := os.Remove(filepath.Join(src, fmt.Sprintf("d%d", i%3), fmt.Sprintf("f%02d.bin", i))); err != nil {
			t.Fatal(err)
		}
	}
	// Some new data too, so that the backup hashes for a while and reports while it runs: with
	// only cached files it can end before its first periodic report.
	for i := range 12 {
		writeRandom(t, filepath.Join(src, "newer", fmt.Sprintf("h%02d.bin", i)), 2<<20, uint64(1300+i))
	}
	shrunk, res := backup("shrunk")
	if p := shrunk.reports[len(shrunk.reports)-2]; p.TotalBytes != 40*(2<<20) || p.TotalFiles != 40 || !p.Estimated {
		t.Errorf("report before the end of a backup smaller than its parent: %+v, want the parent's size kept as the estimate", p)
	}
	if res.Stats.Bytes != 28*(2<<20) || res.Stats.HashedBytes != 12*(2<<20) {
		t.Errorf("shrunk backup stats %+v: want 16 files cached and 12 hashed", res.Stats)
	}
}
