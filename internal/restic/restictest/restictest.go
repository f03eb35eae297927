// Package restictest provides restic repositories written the way Velero's restic uploader wrote
// them, with the real restic program, for tests.
package restictest

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/ferry-backup/ferry/internal/repository"
	"github.com/ferry-backup/ferry/internal/repository/repotest"
)

// Repo is a restic repository the test writes with the restic program.
type Repo struct {
	t        testing.TB
	bin      string
	URL      string
	Password string
	env      []string
}

// New creates a repository at url (restic's syntax: a directory, or s3:http://host/bucket/path)
// with password; creds sign S3 requests.
func New(t testing.TB, url, password string, creds repository.Credentials) *Repo {
	t.Helper()
	r := &Repo{t: t, bin: repotest.Restic(t), URL: url, Password: password,
		env: append(os.Environ(), "RESTIC_REPOSITORY="+url, "RESTIC_PASSWORD="+password, "RESTIC_CACHE_DIR="+t.TempDir(),
			"AWS_ACCESS_KEY_ID="+creds.AccessKeyID, "AWS_SECRET_ACCESS_KEY="+creds.SecretAccessKey)}
	r.Run("", "init")
	return r
}

// Run runs restic in dir with args and returns its output.
func (r *Repo) Run(dir string, args ...string) []byte {
	r.t.Helper()
	cmd := exec.Command(r.bin, args...)
	cmd.Dir, cmd.Env = dir, r.env
	out, err := cmd.Output()
	if err != nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		r.t.Fatalf("restic %v: %v\n%s", args, err, stderr)
	}
	return out
}

// Backup backs dir up as Velero's node-agent does (pkg/restic BackupCommand: `restic backup
// --host=velero --tag=k=v... .` run in the volume's directory) and returns the snapshot's full
// ID, which Velero records in the PodVolumeBackup and the PodVolumeRestore.
func (r *Repo) Backup(dir string, tags map[string]string) string {
	r.t.Helper()
	args := []string{"backup", "--host=velero", "--json"}
	for k, v := range tags {
		args = append(args, fmt.Sprintf("--tag=%s=%s", k, v))
	}
	r.Run(dir, append(args, ".")...)
	var snaps []struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(r.Run("", "snapshots", "--json", "--latest=1"), &snaps); err != nil || len(snaps) != 1 {
		r.t.Fatalf("restic snapshots: %v %v", snaps, err)
	}
	return strings.TrimSpace(snaps[0].ID)
}
