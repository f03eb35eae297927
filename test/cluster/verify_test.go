package cluster

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/test/harness"
)

// A corrupted pack in the store is found by `ferry backup verify`, which names the volume and the
// file, before any restore needs them; a clean backup verifies clean. The verification runs as
// a Job (a ferry-server verify process here) and its result stays on the Backup.
func TestVerifyFindsACorruptedPackBeforeARestore(t *testing.T) {
	c := harness.New(t)
	c.StartServer()
	node := c.StartNode("node-a")
	ns := c.Namespace("app")
	pod := c.CreatePod(node, ns, "db", harness.VolumeSpec{Name: "data", Claim: "db-data"})
	if err := harness.FillVolume(pod.Dirs["data"], 8, 8<<20, 131); err != nil {
		t.Fatal(err)
	}
	b := newBackup(t, c, "nightly", "", ns)
	waitBackup(t, c, b, velerov1.BackupPhaseCompleted)
	volume := ns + "/db/data"

	out, err := c.Ferry("backup", "verify", "nightly", "--percent", "100", "--timeout", "3m")
	if err != nil || !strings.Contains(out, volume) {
		t.Fatalf("verifying a clean backup: %v\n%s", err, out)
	}

	pack := corruptBiggestPack(t, filepath.Join(c.Dir, "storage", "default"))
	out, err = c.Ferry("backup", "verify", "nightly", "--percent", "100", "--timeout", "3m")
	if err == nil {
		t.Fatalf("verifying a backup with a corrupted pack succeeded:\n%s", out)
	}
	for _, want := range []string{"volume " + volume + ": /d0", ".bin: content ", "in pack " + pack, "backup nightly failed verification"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	var res velerov1.BackupVerification
	if err := c.Client.Get(t.Context(), client.ObjectKeyFromObject(b), b); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(b.Annotations[velerov1.AnnotationLastVerification]), &res); err != nil || res.Errors == 0 || res.Job == "" {
		t.Errorf("result on the Backup: %+v (%v)", res, err)
	}
}

// corruptBiggestPack flips bytes in the middle of the largest data pack under dir and returns
// its blob ID.
func corruptBiggestPack(t *testing.T, dir string) string {
	t.Helper()
	var root, file, id string
	var size int64
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Name() == "kopia.repository.f" {
			root = filepath.Dir(p)
		}
		return err
	})
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		rel, _ := filepath.Rel(root, p)
		if err != nil || d.IsDir() || !strings.HasPrefix(rel, "p") {
			return err
		}
		if info, _ := d.Info(); info != nil && info.Size() > size {
			file, size = p, info.Size()
			id = strings.TrimSuffix(strings.ReplaceAll(rel, string(filepath.Separator), ""), ".f")
		}
		return nil
	})
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("no pack under %s: %v", dir, err)
	}
	for i := len(data) / 2; i < len(data)/2+64; i++ {
		data[i] ^= 0xff
	}
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return id
}
