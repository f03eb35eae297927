package uploader_test

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/kopia/kopia/fs/localfs"
	"github.com/kopia/kopia/repo"
	"github.com/kopia/kopia/repo/blob/filesystem"
	"github.com/kopia/kopia/repo/encryption"
	"github.com/kopia/kopia/repo/format"
	"github.com/kopia/kopia/repo/hashing"
	"github.com/kopia/kopia/repo/maintenance"
	"github.com/kopia/kopia/repo/manifest"
	"github.com/kopia/kopia/repo/splitter"
	"github.com/kopia/kopia/snapshot"
	"github.com/kopia/kopia/snapshot/policy"
	"github.com/kopia/kopia/snapshot/upload"

	"github.com/ferry-backup/ferry/internal/repository"
	"github.com/ferry-backup/ferry/internal/repository/repotest"
	"github.com/ferry-backup/ferry/internal/uploader"
)

// veleroPassword is the password `velero install` puts in velero-repo-credentials.
const veleroPassword = "static-passw0rd"

// veleroSource is the source of Velero 1.18's snapshots of volume data (claim web-data) of pod
// app/web.
var veleroSource = snapshot.SourceInfo{Host: "default", UserName: "default", Path: "snapshot-pod-volume/kopia/app/web/web-data"}

// veleroClient is a Kopia client set up as Velero 1.18's node-agent sets itself up, with Kopia's
// library: default@default, Kopia's default formats.
type veleroClient struct {
	t      *testing.T
	dir    string
	config string
}

// newVeleroRepository creates a repository in dir as Velero's server does (Initialize with
// Kopia's defaults, connect as default@default, maintenance owner default@default).
func newVeleroRepository(t *testing.T, dir string) *veleroClient {
	t.Helper()
	ctx := t.Context()
	st, err := filesystem.New(ctx, &filesystem.Options{Path: dir}, true)
	if err != nil {
		t.Fatal(err)
	}
	err = repo.Initialize(ctx, st, &repo.NewRepositoryOptions{
		BlockFormat:  format.ContentFormat{Hash: hashing.DefaultAlgorithm, Encryption: encryption.DefaultAlgorithm},
		ObjectFormat: format.ObjectFormat{Splitter: splitter.DefaultAlgorithm},
	}, veleroPassword)
	if err != nil {
		t.Fatal(err)
	}
	v := &veleroClient{t: t, dir: dir, config: filepath.Join(t.TempDir(), "velero.config")}
	v.session(func(ctx context.Context, w repo.RepositoryWriter) error {
		p := maintenance.DefaultParams()
		p.Owner = "default@default"
		return maintenance.SetParams(ctx, w, &p)
	})
	return v
}

// session connects afresh (seeing what others wrote) and runs fn in a write session.
func (v *veleroClient) session(fn func(context.Context, repo.RepositoryWriter) error) {
	v.t.Helper()
	ctx := v.t.Context()
	st, err := filesystem.New(ctx, &filesystem.Options{Path: v.dir}, false)
	if err != nil {
		v.t.Fatal(err)
	}
	_ = os.Remove(v.config)
	if err := repo.Connect(ctx, v.config, st, veleroPassword, &repo.ConnectOptions{
		ClientOptions: repo.ClientOptions{Hostname: "default", Username: "default"}}); err != nil {
		v.t.Fatal(err)
	}
	r, err := repo.Open(ctx, v.config, veleroPassword, nil)
	if err != nil {
		v.t.Fatal(err)
	}
	defer r.Close(ctx) //nolint:errcheck // test client
	if err := repo.WriteSession(ctx, r, repo.WriteSessionOptions{Purpose: "velero"}, fn); err != nil {
		v.t.Fatal(err)
	}
}

// backup snapshots dir as Velero's kopia uploader does for a pod volume: its per-source policy,
// its tags, description and pin.
func (v *veleroClient) backup(dir string) string {
	v.t.Helper()
	var id manifest.ID
	v.session(func(ctx context.Context, w repo.RepositoryWriter) error {
		keep := policy.OptionalInt(math.MaxInt32)
		p := &policy.Policy{RetentionPolicy: policy.RetentionPolicy{KeepLatest: &keep},
			CompressionPolicy: policy.CompressionPolicy{CompressorName: "none"}, SchedulingPolicy: policy.SchedulingPolicy{Manual: true}}
		if err := policy.SetPolicy(ctx, w, veleroSource, p); err != nil {
			return err
		}
		tree, err := policy.TreeForSource(ctx, w, veleroSource)
		if err != nil {
			return err
		}
		root, err := localfs.Directory(dir)
		if err != nil {
			return err
		}
		previous, err := v.parents(ctx, w)
		if err != nil {
			return err
		}
		man, err := upload.NewUploader(w).Upload(ctx, root, tree, veleroSource, previous...)
		if err != nil {
			return err
		}
		man.Tags = map[string]string{"snapshot-requester": "snapshot-pod-volume", "snapshot-uploader": "kopia"}
		man.Description, man.Pins = "Kopia Uploader", []string{"velero-pin"}
		id, err = snapshot.SaveSnapshot(ctx, w, man)
		return err
	})
	return string(id)
}

// parents finds the parent as Velero does: the latest complete snapshot of the source whose
// requester and uploader tags are Velero's own.
func (v *veleroClient) parents(ctx context.Context, r repo.Repository) ([]*snapshot.Manifest, error) {
	all, err := snapshot.ListSnapshots(ctx, r, veleroSource)
	if err != nil {
		return nil, err
	}
	var latest *snapshot.Manifest
	for _, m := range all {
		if m.Tags["snapshot-requester"] != "snapshot-pod-volume" || m.Tags["snapshot-uploader"] != "kopia" || m.IncompleteReason != "" {
			continue
		}
		if latest == nil || m.StartTime.After(latest.StartTime) {
			latest = m
		}
	}
	if latest == nil {
		return nil, nil
	}
	return []*snapshot.Manifest{latest}, nil
}

// A swap from Velero to Ferry and back keeps incremental backups: Ferry's backup into a
// repository Velero created finds Velero's snapshot as its parent and reads no unchanged file;
// Velero's next backup finds Ferry's; each restores the other's byte for byte.
func TestIncrementalAcrossASwapWithVelero(t *testing.T) {
	loc := repotest.Filesystem(t).ForNamespace("app")
	dir := filepath.Join(loc.Config["path"], loc.Bucket, loc.Prefix, "kopia", "app")
	velero := newVeleroRepository(t, dir)
	src := t.TempDir()
	makeTree(t, src, 8<<20)
	veleroID := velero.backup(src)

	rep := openRepoWith(t, loc, veleroPassword, func(o *repository.Options) { o.Identity, o.MustExist = repository.Identity{}, true })
	opts := uploader.BackupOptions{Tags: map[string]string{"backup": "nightly"}}.AsVelero(uploader.VeleroPodVolumeRequester, "app/web/web-data")
	res, err := uploader.Backup(t.Context(), rep, src, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Ferry after Velero: parent %s, %d bytes read, %d of %d cached, %d uploaded", res.ParentID, res.Stats.HashedBytes, res.Stats.CachedBytes, res.Stats.Bytes, res.Stats.UploadedBytes)
	if res.ParentID != veleroID || res.Stats.HashedBytes != 0 || res.Stats.CachedBytes != res.Stats.Bytes {
		t.Errorf("Ferry's backup after Velero's: parent %q (want %s), %d bytes read, %d of %d cached", res.ParentID, veleroID,
			res.Stats.HashedBytes, res.Stats.CachedBytes, res.Stats.Bytes)
	}
	dst := filepath.Join(t.TempDir(), "from-velero")
	if _, err := uploader.Restore(t.Context(), rep, veleroID, dst, uploader.RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	requireSameFiles(t, src, dst)

	velero.session(func(ctx context.Context, w repo.RepositoryWriter) error {
		parents, err := velero.parents(ctx, w)
		if err != nil {
			return err
		}
		if len(parents) != 1 || string(parents[0].ID) != res.SnapshotID {
			t.Errorf("Velero's next backup would start from %v, want Ferry's snapshot %s", parents, res.SnapshotID)
		}
		return nil
	})
	if next := velero.backup(src); next == "" {
		t.Fatal("Velero's backup after Ferry's saved no snapshot")
	}

	cli := newKopiaCLI(t)
	cli.password = veleroPassword
	cli.run("repository", "connect", "filesystem", "--path", dir, "--override-hostname", "default", "--override-username", "default")
	var listed []listedSnapshot
	// Without --all: the snapshots of this client's own identity, default@default.
	if err := json.Unmarshal(cli.run("snapshot", "list", "--json"), &listed); err != nil {
		t.Fatal(err)
	}
	var ferry *listedSnapshot
	for i := range listed {
		if listed[i].ID == res.SnapshotID {
			ferry = &listed[i]
		}
	}
	if ferry == nil || len(listed) != 3 {
		t.Fatalf("the kopia CLI as default@default lists %+v, want Velero's two snapshots and Ferry's %s", listed, res.SnapshotID)
	}
	if ferry.Source != veleroSource || ferry.Tags["snapshot-requester"] != "snapshot-pod-volume" ||
		ferry.Tags["snapshot-uploader"] != "kopia" || ferry.Tags["backup"] != "nightly" || len(ferry.Pins) != 1 || ferry.Pins[0] != "velero-pin" {
		t.Errorf("Ferry's snapshot as the kopia CLI lists it: %+v, want source %s with Velero's tags and pin", *ferry, veleroSource)
	}
	restored := filepath.Join(t.TempDir(), "by-kopia")
	cli.run("snapshot", "restore", res.SnapshotID, restored)
	requireSameFiles(t, src, restored)
}

// listedSnapshot is a snapshot as `kopia snapshot list --json` prints it.
type listedSnapshot struct {
	ID     string              `json:"id"`
	Source snapshot.SourceInfo `json:"source"`
	Tags   map[string]string   `json:"tags"`
	Pins   []string            `json:"pins"`
}
