package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/repository"
	"github.com/ferry-backup/ferry/internal/restic/restictest"
)

// TestResticRestoreOnTheRealCluster restores a legacy restic backup as Velero 1.18 asks for one:
// the restic program (here the machine's) wrote a repository at <prefix>/restic/<namespace> of
// the location's bucket with the repository password, and a PodVolumeRestore with uploaderType
// restic and an empty repoIdentifier names its snapshot. The node-agent in its pod runs the
// restic shipped in Ferry's image and writes the tar stream beneath the volume: every file comes
// back, checked by its SHA-256 from inside the application's pod.
func TestResticRestoreOnTheRealCluster(t *testing.T) {
	c, ns := story(t, "restic")
	ctx := t.Context()
	app := c.NewApp(ns)
	app.Volumes = []AppVolume{{App: "web", Dir: "/content"}}
	t.Cleanup(app.Discard)
	must(t, app.Deploy(ctx))

	src, want := localTree(t, 40, 4, "restic file %d\n", 1000)
	secret := &corev1.Secret{}
	must(t, c.Client.Get(ctx, client.ObjectKey{Namespace: InstallNamespace, Name: "velero-repo-credentials"}, secret))
	url := fmt.Sprintf("s3:%s/%s/ferry/restic/%s", c.Env["CLUSTER_S3_URL"], Bucket, ns)
	repo := restictest.New(t, url, string(secret.Data["repository-password"]),
		repository.Credentials{AccessKeyID: c.Env["CLUSTER_S3_ACCESS_KEY"], SecretAccessKey: c.Env["CLUSTER_S3_SECRET_KEY"]})
	id := repo.Backup(src, map[string]string{"backup": "legacy", "ns": ns, "volume": "content"})

	web, err := app.Pod(ctx, "web")
	must(t, err)
	pvr := &velerov1.PodVolumeRestore{ObjectMeta: metav1.ObjectMeta{Namespace: InstallNamespace, GenerateName: "legacy-",
		Labels: map[string]string{velerov1.LabelRestoreName: "legacy"}},
		Spec: velerov1.PodVolumeRestoreSpec{Pod: corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: web},
			Volume: "content", BackupStorageLocation: LocationName, UploaderType: "restic", SnapshotID: id, SourceNamespace: ns}}
	must(t, c.Client.Create(ctx, pvr))
	must(t, c.WaitVolume(ctx, pvr, 3*time.Minute))
	if pvr.Status.Phase != velerov1.PodVolumePhaseCompleted {
		t.Fatalf("restic restore %s: %s %q", pvr.Name, pvr.Status.Phase, pvr.Status.Message)
	}
	out, err := c.Exec(ctx, ns, web, "cd /content && find . -type f | sort | xargs sha256sum")
	must(t, err)
	if got := strings.TrimSpace(out); got != want {
		t.Fatalf("the volume after the restic restore:\n%s\nwant:\n%s", got, want)
	}
	t.Logf("restic snapshot %s restored into %s/%s:content by the node-agent: %s, %d bytes", id[:8], ns, web,
		pvr.Status.Phase, pvr.Status.Progress.BytesDone)
}

// localTree writes, in a directory of this machine, files files spread over dirs directories,
// file i holding line (formatted with i) repeat×(i+1) times, and returns the directory and its
// sums.
func localTree(t *testing.T, files, dirs int, line string, repeat int) (string, string) {
	t.Helper()
	dir := t.TempDir()
	for i := range files {
		p := filepath.Join(dir, fmt.Sprintf("dir%d", i%dirs), fmt.Sprintf("file-%02d", i))
		must(t, os.MkdirAll(filepath.Dir(p), 0o755))
		must(t, os.WriteFile(p, []byte(strings.Repeat(fmt.Sprintf(line, i), repeat*(i+1))), 0o644))
	}
	return dir, sums(t, dir)
}

// sums lists the files under dir as sha256sum prints them, sorted by path.
func sums(t *testing.T, dir string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		sum := sha256.Sum256(data)
		lines = append(lines, hex.EncodeToString(sum[:])+"  ./"+rel)
		return nil
	})
	must(t, err)
	sort.Slice(lines, func(i, j int) bool { return lines[i][66:] < lines[j][66:] })
	return strings.Join(lines, "\n")
}
