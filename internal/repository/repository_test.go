package repository_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kopia/kopia/repo/blob"
	"github.com/kopia/kopia/repo/format"
	"github.com/kopia/kopia/repo/maintenance"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/repository"
	"github.com/ferry-backup/ferry/internal/repository/repotest"
)

func open(t *testing.T, loc repository.Location, password string, mutate ...func(*repository.Options)) (*repository.Repository, error) {
	t.Helper()
	opts := repository.Options{Location: loc, Password: password, WorkDir: t.TempDir(), ConnectTimeout: 20 * time.Second}
	for _, m := range mutate {
		m(&opts)
	}
	r, err := repository.Open(t.Context(), opts)
	if err == nil {
		t.Cleanup(func() { _ = r.Close(context.Background()) })
	}
	return r, err
}

func TestOpenCreatesOnceThenConnects(t *testing.T) {
	for _, b := range repotest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			loc := b.New(t)
			first, err := open(t, loc, "pw")
			if err != nil {
				t.Fatalf("create: %v", err)
			}
			if !first.Created() {
				t.Error("first open did not report creating the repository")
			}
			if got := first.ContentReader().ContentFormat().GetHashFunction(); got != repository.HashBLAKE3 {
				t.Errorf("hash = %s, want %s", got, repository.HashBLAKE3)
			}
			if got := first.ContentReader().ContentFormat().GetEncryptionAlgorithm(); got != repository.Encryption {
				t.Errorf("encryption = %s, want %s", got, repository.Encryption)
			}
			params, err := maintenance.GetParams(t.Context(), first)
			if err != nil || params.Owner != repository.MaintenanceOwner {
				t.Errorf("maintenance owner = %v (%v), want %s", params, err, repository.MaintenanceOwner)
			}
			second, err := open(t, loc, "pw")
			if err != nil {
				t.Fatalf("connect: %v", err)
			}
			if second.Created() {
				t.Error("second open created the repository again")
			}
		})
	}
}

func TestHashIsChosenAtCreation(t *testing.T) {
	r, err := open(t, repotest.Filesystem(t), "pw", func(o *repository.Options) { o.Hash = repository.HashHMACSHA256 })
	if err != nil {
		t.Fatal(err)
	}
	if got := r.ContentReader().ContentFormat().GetHashFunction(); got != repository.HashHMACSHA256 {
		t.Errorf("hash = %s, want %s", got, repository.HashHMACSHA256)
	}
	if _, err := open(t, repotest.Filesystem(t), "pw", func(o *repository.Options) { o.Hash = "MD5" }); err == nil || !strings.Contains(err.Error(), "MD5") {
		t.Errorf("unknown hash: err = %v, want one naming MD5", err)
	}
}

func TestWrongPasswordIsReported(t *testing.T) {
	for _, b := range repotest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			loc := b.New(t)
			if _, err := open(t, loc, "right"); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			_, err := open(t, loc, "wrong")
			if !errors.Is(err, repository.ErrWrongPassword) {
				t.Fatalf("err = %v, want ErrWrongPassword", err)
			}
			if d := time.Since(start); d > 15*time.Second {
				t.Errorf("took %s to report a wrong password", d)
			}
		})
	}
}

func TestReadOnlyAndMustExistDoNotCreate(t *testing.T) {
	for _, b := range repotest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			loc := b.New(t)
			for _, mutate := range []func(*repository.Options){
				func(o *repository.Options) { o.ReadOnly = true },
				func(o *repository.Options) { o.MustExist = true },
			} {
				_, err := open(t, loc, "pw", mutate)
				if !errors.Is(err, repository.ErrNotInitialized) {
					t.Fatalf("err = %v, want ErrNotInitialized", err)
				}
			}
			if _, err := open(t, loc, "pw"); err != nil {
				t.Fatal(err)
			}
			if _, err := open(t, loc, "pw", func(o *repository.Options) { o.MustExist = true }); err != nil {
				t.Fatalf("existing repository: %v", err)
			}
		})
	}
}

func TestUnreachableS3FailsWithinTheTimeout(t *testing.T) {
	start := time.Now()
	_, err := open(t, repotest.UnreachableS3(t), "pw", func(o *repository.Options) { o.ConnectTimeout = 3 * time.Second })
	if err == nil {
		t.Fatal("opened a repository on a closed port")
	}
	if !strings.Contains(err.Error(), "127.0.0.1") {
		t.Errorf("error %q does not name the endpoint", err)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("took %s, want about the 3s connect timeout", d)
	}
}

func TestMissingBucketIsReported(t *testing.T) {
	loc := repotest.S3(t)
	loc.Bucket = "no-such-bucket"
	_, err := open(t, loc, "pw")
	if err == nil || !strings.Contains(err.Error(), "no-such-bucket") {
		t.Fatalf("err = %v, want one naming the bucket", err)
	}
}

func TestLocationFor(t *testing.T) {
	bsl := &velerov1.BackupStorageLocation{Spec: velerov1.BackupStorageLocationSpec{
		Provider:    "velero.io/aws",
		Config:      map[string]string{"region": "eu-west-1", "s3Url": "http://minio.velero:9000"},
		StorageType: velerov1.StorageType{ObjectStorage: &velerov1.ObjectStorageLocation{Bucket: "b", Prefix: "/cluster-a/"}},
	}}
	creds := []byte("[default]\naws_access_key_id = AKIA1\naws_secret_access_key = s3cr3t\n[other]\naws_access_key_id=AKIA2\naws_secret_access_key=x\n")
	loc, err := repository.LocationFor(bsl, creds)
	if err != nil {
		t.Fatal(err)
	}
	if loc.Provider != repository.ProviderAWS || loc.Credentials.AccessKeyID != "AKIA1" || loc.Credentials.SecretAccessKey != "s3cr3t" {
		t.Errorf("location = %+v", loc)
	}
	if got := loc.ForNamespace("app").String(); got != "s3://b/cluster-a/kopia/app/ at http://minio.velero:9000" {
		t.Errorf("per-namespace location = %s", got)
	}
	if strings.Contains(loc.Credentials.String(), "s3cr3t") {
		t.Error("credentials print their secret")
	}

	bsl.Spec.Provider = "gcp"
	if _, err := repository.LocationFor(bsl, nil); !errors.Is(err, repository.ErrUnsupportedProvider) || !strings.Contains(err.Error(), "gcp") {
		t.Errorf("gcp: err = %v, want ErrUnsupportedProvider naming it", err)
	}
	bsl.Spec.Provider = "aws"
	bsl.Spec.Config = map[string]string{"s3Url": "minio:9000"}
	if _, err := repository.LocationFor(bsl, nil); err == nil || !strings.Contains(err.Error(), "config.s3Url") {
		t.Errorf("bad s3Url: err = %v, want one naming config.s3Url", err)
	}
	for _, bad := range []string{"2", "-1m", "0s"} {
		bsl.Spec.Config = map[string]string{"stallTimeout": bad}
		if _, err := repository.LocationFor(bsl, nil); err == nil || !strings.Contains(err.Error(), "config.stallTimeout") {
			t.Errorf("stallTimeout %q: err = %v, want one naming config.stallTimeout", bad, err)
		}
	}
	bsl.Spec.Config = map[string]string{"stallTimeout": "45s"}
	if _, err := repository.LocationFor(bsl, nil); err != nil {
		t.Errorf("stallTimeout 45s: %v", err)
	}
	bsl.Spec.Provider = "filesystem"
	bsl.Spec.Config = map[string]string{"path": "/backups"}
	bsl.Spec.ObjectStorage.Bucket = "../../etc"
	if _, err := repository.LocationFor(bsl, nil); err == nil {
		t.Error("a bucket that climbs out of config.path was accepted")
	}
	if _, err := repository.ParseCredentials([]byte("[default]\naws_access_key_id=A\n"), ""); err == nil {
		t.Error("credentials without a secret key were accepted")
	}
}

func TestRecordsAndProbe(t *testing.T) {
	for _, b := range repotest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			loc := b.New(t)
			if err := repository.Probe(t.Context(), loc, true); err != nil {
				t.Fatalf("probe: %v", err)
			}
			r, err := open(t, loc, "pw")
			if err != nil {
				t.Fatal(err)
			}
			type rec struct{ Volumes []string }
			if err := r.SaveRecord(t.Context(), "backup", "b1", rec{Volumes: []string{"a"}}); err != nil {
				t.Fatal(err)
			}
			if err := r.SaveRecord(t.Context(), "backup", "b1", rec{Volumes: []string{"a", "b"}}); err != nil {
				t.Fatal(err)
			}
			for _, name := range []string{"b3", "b2"} {
				if err := r.SaveRecord(t.Context(), "backup", name, rec{}); err != nil {
					t.Fatal(err)
				}
			}
			if err := r.SaveRecord(t.Context(), "other", "x", rec{}); err != nil {
				t.Fatal(err)
			}
			var got rec
			fresh, err := open(t, loc, "pw")
			if err != nil {
				t.Fatal(err)
			}
			if err := fresh.LoadRecord(t.Context(), "backup", "b1", &got); err != nil || len(got.Volumes) != 2 {
				t.Fatalf("record = %+v, %v", got, err)
			}
			if names, err := fresh.RecordNames(t.Context(), "backup"); err != nil || strings.Join(names, ",") != "b1,b2,b3" {
				t.Fatalf("record names = %v, %v; want b1,b2,b3 (one per name, none of another kind)", names, err)
			}
			if err := fresh.DeleteRecord(t.Context(), "backup", "b1"); err != nil {
				t.Fatal(err)
			}
			if names, err := fresh.RecordNames(t.Context(), "backup"); err != nil || strings.Join(names, ",") != "b2,b3" {
				t.Fatalf("record names after delete = %v, %v", names, err)
			}
			if err := fresh.LoadRecord(t.Context(), "backup", "b1", &got); !errors.Is(err, repository.ErrNoRecord) {
				t.Fatalf("after delete: %v", err)
			}
		})
	}
	if err := repository.Probe(t.Context(), repotest.UnreachableS3(t), false); err == nil {
		t.Error("probe of a closed port succeeded")
	}
}

// No S3 key is left on the node's disk: Kopia's connection file, which holds the storage
// credentials in clear, is gone once the repository is open, and opening again still works
// (including with a second handle kept open meanwhile, and after the first closed).
func TestCredentialsAreNotLeftOnDisk(t *testing.T) {
	loc := repotest.S3(t)
	workDir := t.TempDir()
	opts := repository.Options{Location: loc, Password: "pw", WorkDir: workDir, ConnectTimeout: 20 * time.Second}
	first, err := repository.Open(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	second, err := repository.Open(t.Context(), opts)
	if err != nil {
		t.Fatalf("a second open: %v", err)
	}
	if err := first.SaveRecord(t.Context(), "backup", "b1", map[string]string{"a": "b"}); err != nil {
		t.Fatalf("write through the open handle: %v", err)
	}
	checkNoSecret := func(when string) {
		t.Helper()
		err := filepath.WalkDir(workDir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			data, err := os.ReadFile(p)
			if err == nil && bytes.Contains(data, []byte(loc.Credentials.SecretAccessKey)) {
				t.Errorf("%s: %s holds the S3 secret key", when, p)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	checkNoSecret("while open")
	for _, r := range []*repository.Repository{first, second} {
		if err := r.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	checkNoSecret("after close")
	third, err := repository.Open(t.Context(), opts)
	if err != nil {
		t.Fatalf("open again: %v", err)
	}
	defer third.Close(context.Background())
	var got map[string]string
	if err := third.LoadRecord(t.Context(), "backup", "b1", &got); err != nil || got["a"] != "b" {
		t.Fatalf("record: %v, %v", got, err)
	}
}

// A password change that stopped between Kopia's two format blobs (kopia.blobcfg already under
// the new password, kopia.repository still under the old) leaves a repository neither password
// opens; the repair puts it back under the old password, and the change can be made again.
// kopia.blobcfg keeps what it held: the storage retention set with the kopia CLI's
// set-parameters (a bucket with Object Lock), which the repair reads with the new password; given
// a third password it refuses rather than drop them, while an empty kopia.blobcfg is rewritten
// whatever the password.
func TestInterruptedPasswordChangeIsRepaired(t *testing.T) {
	retention := format.BlobStorageConfiguration{RetentionMode: blob.Governance, RetentionPeriod: 48 * time.Hour}
	for _, c := range []struct {
		name      string
		location  func(testing.TB) repository.Location
		retention format.BlobStorageConfiguration
	}{
		{"filesystem", repotest.Filesystem, format.BlobStorageConfiguration{}},
		{"s3", repotest.S3, format.BlobStorageConfiguration{}},
		{"s3 with retention", repotest.S3ObjectLock, retention},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := t.Context()
			loc := c.location(t)
			r, err := open(t, loc, "old-password")
			if err != nil {
				t.Fatal(err)
			}
			if c.retention.IsRetentionEnabled() {
				setRetention(t, r, c.retention)
			}
			if err := r.SaveRecord(ctx, "backup", "b1", map[string]string{"kept": "yes"}); err != nil {
				t.Fatal(err)
			}
			repository.InterruptPasswordChange(t, loc, "old-password", "new-password")

			_, errOld := open(t, loc, "old-password")
			_, errNew := open(t, loc, "new-password")
			if !errors.Is(errOld, repository.ErrInterruptedRekey) || !errors.Is(errNew, repository.ErrWrongPassword) {
				t.Fatalf("interrupted state not recognized: old password %v; new password %v", errOld, errNew)
			}
			opts := repository.Options{Location: loc, WorkDir: t.TempDir(), ConnectTimeout: 20 * time.Second}
			repaired, err := repository.RepairInterruptedRekey(ctx, opts, "old-password", "third-password")
			if c.retention.IsRetentionEnabled() {
				if err == nil || repaired {
					t.Fatalf("repair with a password that does not decrypt the retention settings: %t, %v", repaired, err)
				}
				repaired, err = repository.RepairInterruptedRekey(ctx, opts, "old-password", "new-password")
			}
			if err != nil || !repaired {
				t.Fatalf("repair: %v, %v", repaired, err)
			}
			again, err := open(t, loc, "old-password")
			if err != nil {
				t.Fatalf("the old password after the repair: %v", err)
			}
			requireBlobCfg(t, again, c.retention)
			if err := again.ChangePassword(ctx, "new-password"); err != nil {
				t.Fatal(err)
			}
			after, err := open(t, loc, "new-password")
			if err != nil {
				t.Fatalf("the new password after the change: %v", err)
			}
			requireBlobCfg(t, after, c.retention)
			var got map[string]string
			if err := after.LoadRecord(ctx, "backup", "b1", &got); err != nil || got["kept"] != "yes" {
				t.Fatalf("record after the repair: %v, %v", got, err)
			}
			if repaired, err := repository.RepairInterruptedRekey(ctx, opts, "new-password", "other"); err != nil || repaired {
				t.Errorf("a healthy repository was repaired: %v, %v", repaired, err)
			}
		})
	}
}

// setRetention sets the storage retention of new blobs, as the kopia CLI's repository
// set-parameters --retention-mode --retention-period does.
func setRetention(t *testing.T, r *repository.Repository, cfg format.BlobStorageConfiguration) {
	t.Helper()
	fm := r.FormatManager()
	params, err := fm.GetMutableParameters(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	features, err := fm.RequiredFeatures(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := fm.SetParameters(t.Context(), params, cfg, features); err != nil {
		t.Fatalf("set retention: %v", err)
	}
}

func requireBlobCfg(t *testing.T, r *repository.Repository, want format.BlobStorageConfiguration) {
	t.Helper()
	got, err := r.FormatManager().BlobCfgBlob(t.Context())
	if err != nil || got != want {
		t.Fatalf("kopia.blobcfg holds %+v, want %+v (%v)", got, want, err)
	}
}
