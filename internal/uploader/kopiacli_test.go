package uploader_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/ferry-backup/ferry/internal/repository"
	"github.com/ferry-backup/ferry/internal/repository/repotest"
	"github.com/ferry-backup/ferry/internal/uploader"
)

// kopiaCLI runs the kopia CLI against its own config file; it fails the test on error.
type kopiaCLI struct {
	t        *testing.T
	bin      string
	config   string
	password string
}

func newKopiaCLI(t *testing.T) *kopiaCLI {
	return &kopiaCLI{t: t, bin: repotest.Tool(t, "kopia"), config: filepath.Join(t.TempDir(), "kopia.config"), password: "shared-password"}
}

func (k *kopiaCLI) run(args ...string) []byte {
	k.t.Helper()
	cmd := exec.Command(k.bin, append(args, "--config-file", k.config)...)
	cmd.Env = append(os.Environ(), "KOPIA_PASSWORD="+k.password, "KOPIA_CHECK_FOR_UPDATES=false",
		"KOPIA_CACHE_DIRECTORY="+filepath.Join(filepath.Dir(k.config), "cache"), "KOPIA_LOG_DIR="+filepath.Dir(k.config))
	out, err := cmd.Output()
	if err != nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		k.t.Fatalf("kopia %v: %v\n%s", args, err, stderr)
	}
	return out
}

func (k *kopiaCLI) connect(loc repository.Location) {
	k.t.Helper()
	if loc.Provider == repository.ProviderFilesystem {
		dir := filepath.Join(loc.Config["path"], loc.Bucket, loc.Prefix)
		if loc.Namespace != "" {
			dir = filepath.Join(dir, "kopia", loc.Namespace)
		}
		k.run("repository", "connect", "filesystem", "--path", dir)
		return
	}
	prefix := loc.Prefix + "/"
	if loc.Namespace != "" {
		prefix += "kopia/" + loc.Namespace + "/"
	}
	k.run("repository", "connect", "s3", "--bucket", loc.Bucket, "--prefix", prefix,
		"--endpoint", repotest.Endpoint(loc), "--disable-tls", "--region", "us-east-1",
		"--access-key", loc.Credentials.AccessKeyID, "--secret-access-key", loc.Credentials.SecretAccessKey)
}

// TestKopiaCLIReadsFerrySnapshots: the kopia CLI, with the same password, opens Ferry's
// repositories in both layouts, lists Ferry's snapshot and restores it byte for byte.
func TestKopiaCLIReadsFerrySnapshots(t *testing.T) {
	cases := []struct {
		name string
		loc  func(t testing.TB) repository.Location
	}{
		{"filesystem per location", repotest.Filesystem},
		{"filesystem per namespace", func(t testing.TB) repository.Location { return repotest.Filesystem(t).ForNamespace("app") }},
		{"s3 per namespace", func(t testing.TB) repository.Location { return repotest.S3(t).ForNamespace("app") }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			loc := tc.loc(t)
			src := t.TempDir()
			makeTree(t, src, 0)
			res, err := uploader.Backup(t.Context(), openRepo(t, loc, "shared-password"), src, uploader.BackupOptions{
				Source: "/app/data", Tags: map[string]string{"backup": "nightly"}})
			if err != nil {
				t.Fatal(err)
			}
			cli := newKopiaCLI(t)
			cli.connect(loc)
			var listed []struct {
				ID     string                `json:"id"`
				Source struct{ Path string } `json:"source"`
				Tags   map[string]string     `json:"tags"`
			}
			if err := json.Unmarshal(cli.run("snapshot", "list", "--all", "--json"), &listed); err != nil {
				t.Fatal(err)
			}
			if len(listed) != 1 || listed[0].ID != res.SnapshotID || listed[0].Source.Path != "/app/data" {
				t.Fatalf("kopia lists %+v, want snapshot %s of /app/data", listed, res.SnapshotID)
			}
			dst := filepath.Join(t.TempDir(), "restored")
			cli.run("snapshot", "restore", res.SnapshotID, dst)
			requireSameFiles(t, src, dst)
		})
	}
}
