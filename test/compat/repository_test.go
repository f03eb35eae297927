package compat

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/repository/repotest"
	"github.com/ferry-backup/ferry/test/harness"
)

// harnessPassword is the password harness.New puts in velero-repo-credentials.
const harnessPassword = "harness-password-1"

// veleroKopia is the kopia CLI connected to one namespace repository the way Velero's agents
// connect: as default@default.
type veleroKopia struct {
	t           *testing.T
	bin, config string
}

func newVeleroKopia(t *testing.T) *veleroKopia {
	return &veleroKopia{t: t, bin: repotest.Tool(t, "kopia"), config: filepath.Join(t.TempDir(), "kopia.config")}
}

func (k *veleroKopia) run(args ...string) []byte {
	k.t.Helper()
	cmd := exec.Command(k.bin, append(args, "--config-file", k.config)...)
	dir := filepath.Dir(k.config)
	cmd.Env = append(os.Environ(), "KOPIA_PASSWORD="+harnessPassword, "KOPIA_CHECK_FOR_UPDATES=false",
		"KOPIA_CACHE_DIRECTORY="+filepath.Join(dir, "cache"), "KOPIA_LOG_DIR="+dir)
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

type kopiaSnapshot struct {
	ID     string `json:"id"`
	Source struct {
		Host, UserName, Path string
	} `json:"source"`
	Tags map[string]string `json:"tags"`
}

func (k *veleroKopia) list() []kopiaSnapshot {
	k.t.Helper()
	var listed []kopiaSnapshot
	if err := json.Unmarshal(k.run("snapshot", "list", "--json"), &listed); err != nil {
		k.t.Fatal(err)
	}
	return listed
}

// files is Describe without directories, whose times the kopia CLI does not restore.
func files(t *testing.T, dir string) string {
	t.Helper()
	all, err := harness.Describe(dir, ".velero")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(all, "\n") {
		if f := strings.Fields(line); len(f) > 1 && !strings.HasPrefix(f[1], "d") {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// Velero's repository layout end to end: a namespace's repository created by Velero
// (<prefix>/kopia/<namespace>/, snapshots of default@default with Velero's source and tags) and
// the BackupRepository Velero's server records it with. Ferry's node-agent, given a
// PodVolumeBackup created exactly as Velero's server creates it, backs up into that repository
// incrementally from Velero's snapshot; the kopia CLI as default@default lists Ferry's snapshot
// where Velero's agent looks for parents and restores it; Ferry restores Velero's snapshot.
func TestNodeAgentWritesVelerosRepositoryLayout(t *testing.T) {
	c := harness.New(t)
	node := c.StartNode("node-a")
	ns := c.Namespace("app")
	web := c.CreatePod(node, ns, "web", harness.VolumeSpec{Name: "data", Claim: "web-data"})
	if err := harness.FillVolume(web.Dirs["data"], 8, 1<<20, 3); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	// What Velero's server and agent left: the namespace's repository and one backup of the volume.
	repoDir := filepath.Join(c.Dir, "storage", "default", "ferry", "kopia", ns)
	kopia := newVeleroKopia(t)
	kopia.run("repository", "create", "filesystem", "--path", repoDir, "--override-hostname", "default", "--override-username", "default")
	source := "snapshot-pod-volume/kopia/" + ns + "/web/web-data"
	kopia.run("snapshot", "create", web.Dirs["data"], "--override-source", "default@default:"+source,
		"--description", "Kopia Uploader", "--pin", "velero-pin")
	velero := kopia.list()
	if len(velero) != 1 {
		t.Fatalf("Velero's side: %+v", velero)
	}
	br := &velerov1.BackupRepository{ObjectMeta: metav1.ObjectMeta{Namespace: c.Install, Name: ns + "-default-kopia",
		Labels: map[string]string{"velero.io/volume-namespace": ns, velerov1.LabelStorageLocation: "default", "velero.io/repository-type": "kopia"}},
		Spec: velerov1.BackupRepositorySpec{VolumeNamespace: ns, BackupStorageLocation: "default", RepositoryType: "kopia"}}
	if err := c.Client.Create(ctx, br); err != nil {
		t.Fatal(err)
	}

	pvb := c.BackupVolume(web, "data", "", func(p *velerov1.PodVolumeBackup) {
		p.GenerateName = "nightly-"
		p.Labels = map[string]string{velerov1.LabelBackupName: "nightly", velerov1.LabelBackupUID: "8c2b5c1e-uid", "velero.io/pvc-uid": "pvc-uid-1"}
		p.Annotations = map[string]string{velerov1.AnnotationPVCName: "web-data"}
		p.Spec.Tags = map[string]string{"backup": "nightly", "backup-uid": "8c2b5c1e-uid", "pod": "web", "pod-uid": string(web.UID),
			"ns": ns, "volume": "data", "pvc-uid": "pvc-uid-1"}
		p.Spec.RepoIdentifier, p.Spec.UploaderType = "", velerov1.UploaderTypeKopia
	})
	c.WaitPhase(pvb, velerov1.PodVolumePhaseCompleted, 2*time.Minute)
	if up := pvb.Status.Progress.IncrementalBytes; up > 64<<10 || pvb.Status.Progress.TotalBytes < 1<<20 {
		t.Errorf("Ferry's backup after Velero's uploaded %d of %d bytes; it should start from Velero's snapshot", up, pvb.Status.Progress.TotalBytes)
	}

	var ferry *kopiaSnapshot
	listed := kopia.list()
	for i := range listed {
		if listed[i].ID == pvb.Status.SnapshotID {
			ferry = &listed[i]
		}
	}
	if ferry == nil {
		t.Fatalf("the kopia CLI as default@default does not list Ferry's snapshot %s: %+v", pvb.Status.SnapshotID, listed)
	}
	if s := ferry.Source; s.Host != "default" || s.UserName != "default" || s.Path != source ||
		ferry.Tags["snapshot-requester"] != "snapshot-pod-volume" || ferry.Tags["snapshot-uploader"] != "kopia" || ferry.Tags["backup"] != "nightly" {
		t.Errorf("Ferry's snapshot: %+v, want default@default:%s with Velero's tags", *ferry, source)
	}
	restored := filepath.Join(t.TempDir(), "by-kopia")
	kopia.run("snapshot", "restore", pvb.Status.SnapshotID, restored)
	if got, want := files(t, restored), files(t, web.Dirs["data"]); got != want {
		t.Errorf("the kopia CLI restores Ferry's snapshot differently:\n%s\nwant\n%s", got, want)
	}

	target := c.CreatePod(node, ns, "web-restored", harness.VolumeSpec{Name: "data", Claim: "web-restored-data"})
	pvr := c.RestoreVolume(target, "data", velero[0].ID, "", func(p *velerov1.PodVolumeRestore) {
		p.GenerateName, p.Spec.Node = "nightly-", ""
		p.Spec.RepoIdentifier, p.Spec.UploaderType = "", velerov1.UploaderTypeKopia
	})
	c.WaitPhase(pvr, velerov1.PodVolumePhaseCompleted, 2*time.Minute)
	want, _ := harness.Describe(web.Dirs["data"])
	if got, _ := harness.Describe(target.Dirs["data"], ".velero"); got != want {
		t.Error("Ferry restores Velero's snapshot differently")
	}
}
