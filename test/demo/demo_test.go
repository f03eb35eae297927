// Package demo is `make demo`: Ferry's main job on a local control plane. It starts a real
// kube-apiserver and etcd, ferry-server and two simulated nodes (ferry-node-agent processes with
// their own pods directories), creates pods whose volumes hold a few hundred MiB of files, backs
// them up with live progress, wipes the volumes, restores them and checks every byte.
//
// It runs only when FERRY_DEMO=1 (make demo sets it); FERRY_DEMO_S3=1 stores the backup in the
// local S3 server instead of a directory.
package demo

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/repository/repotest"
	"github.com/ferry-backup/ferry/internal/testenv"
	"github.com/ferry-backup/ferry/test/harness"
)

func TestMain(m *testing.M) { testenv.Run(m, repotest.Stop, harness.Stop) }

func say(format string, args ...any) { fmt.Printf(format+"\n", args...) }

func TestDemo(t *testing.T) {
	if os.Getenv("FERRY_DEMO") != "1" {
		t.Skip("the demo runs with FERRY_DEMO=1 (make demo)")
	}
	start := time.Now()
	c := harness.New(t)
	bsl := "default"
	where := "a directory: " + filepath.Join(c.Dir, "storage")
	if os.Getenv("FERRY_DEMO_S3") == "1" {
		bsl = c.CreateS3BSL("s3").Name
		where = "the local S3 server"
	}
	c.StartServer()
	nodes := []*harness.Node{c.StartNode("node-a"), c.StartNode("node-b")}
	say("== Ferry demo: a real API server, ferry-server and 2 node-agents (node-a, node-b); backups go to %s", where)
	say("   look around while it runs: kubectl --kubeconfig %s get backups,podvolumebackups,restores,podvolumerestores -n %s", c.Env.Kubeconfig, c.Install)

	ns := c.Namespace("demo")
	pods := []*harness.Pod{
		c.CreatePod(nodes[0], ns, "shop", harness.VolumeSpec{Name: "data", Claim: "shop-data"}),
		c.CreatePod(nodes[1], ns, "db", harness.VolumeSpec{Name: "data", Claim: "db-data"}),
		c.CreatePod(nodes[0], ns, "cache", harness.VolumeSpec{Name: "tmp"}),
	}
	want, total := fill(t, pods)
	say("== %d pods on 2 nodes, %d volumes, %.0f MiB of files", len(pods), len(want), float64(total)/(1<<20))

	yes := true
	b := &velerov1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: c.Install, Name: "demo-backup"},
		Spec: velerov1.BackupSpec{IncludedNamespaces: []string{ns}, DefaultVolumesToFsBackup: &yes, StorageLocation: bsl}}
	if err := c.Client.Create(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	say("== backup %s created; progress per volume (kubectl get podvolumebackups -n %s):", b.Name, c.Install)
	backupTime := watch(t, c, "backup", b.Name, func() bool {
		_ = c.Client.Get(context.Background(), client.ObjectKeyFromObject(b), b)
		return b.Status.Phase != velerov1.BackupPhaseNew && b.Status.Phase != velerov1.BackupPhaseInProgress && b.Status.Phase != ""
	})
	if b.Status.Phase != velerov1.BackupPhaseCompleted {
		t.Fatalf("backup ended %s: %s", b.Status.Phase, b.Status.FailureReason)
	}
	say("== backup %s: %s in %s", b.Name, b.Status.Phase, backupTime.Round(time.Millisecond))

	for _, p := range pods {
		for _, dir := range p.Dirs {
			if err := os.RemoveAll(dir); err != nil || os.MkdirAll(dir, 0o755) != nil {
				t.Fatalf("wipe %s: %v", dir, err)
			}
		}
	}
	say("== all volume data deleted; restoring")
	rs := &velerov1.Restore{ObjectMeta: metav1.ObjectMeta{Namespace: c.Install, Name: "demo-restore"},
		Spec: velerov1.RestoreSpec{BackupName: b.Name}}
	if err := c.Client.Create(context.Background(), rs); err != nil {
		t.Fatal(err)
	}
	restoreTime := watch(t, c, "restore", rs.Name, func() bool {
		_ = c.Client.Get(context.Background(), client.ObjectKeyFromObject(rs), rs)
		return rs.Status.Phase != velerov1.RestorePhaseNew && rs.Status.Phase != velerov1.RestorePhaseInProgress && rs.Status.Phase != ""
	})
	if rs.Status.Phase != velerov1.RestorePhaseCompleted {
		t.Fatalf("restore ended %s: %s", rs.Status.Phase, rs.Status.FailureReason)
	}
	verify(t, pods, want)
	stored := storedBytes(c, bsl)

	again := &velerov1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: c.Install, Name: "demo-backup-2"},
		Spec: velerov1.BackupSpec{IncludedNamespaces: []string{ns}, DefaultVolumesToFsBackup: &yes, StorageLocation: bsl}}
	if err := c.Client.Create(context.Background(), again); err != nil {
		t.Fatal(err)
	}
	say("== a second backup of the restored, unchanged volumes")
	againTime := watch(t, c, "backup", again.Name, func() bool {
		_ = c.Client.Get(context.Background(), client.ObjectKeyFromObject(again), again)
		return again.Status.Phase == velerov1.BackupPhaseCompleted || again.Status.Phase == velerov1.BackupPhaseFailed || again.Status.Phase == velerov1.BackupPhasePartiallyFailed
	})
	if again.Status.Phase != velerov1.BackupPhaseCompleted {
		t.Fatalf("second backup ended %s: %s", again.Status.Phase, again.Status.FailureReason)
	}
	say("== summary")
	say("   data:        %d volumes, %.1f MiB in %d files", len(want), float64(total)/(1<<20), countFiles(want))
	say("   backup:      %s (%.0f MB/s)", backupTime.Round(time.Millisecond), float64(total)/1e6/backupTime.Seconds())
	say("   restore:     %s (%.0f MB/s)", restoreTime.Round(time.Millisecond), float64(total)/1e6/restoreTime.Seconds())
	if stored > 0 {
		say("   repository:  %.1f MiB stored for %.1f MiB of data (the shop and cache volumes hold the same files: stored once)", float64(stored)/(1<<20), float64(total)/(1<<20))
	}
	say("   2nd backup:  %s, %.1f KiB uploaded (nothing changed)", againTime.Round(time.Millisecond), float64(uploadedBy(c, again.Name))/1024)
	say("   verified:    every byte, mode, time and symlink of every volume")
	say("   demo took:   %s", time.Since(start).Round(time.Second))
}

// fill writes the demo data; the cache volume repeats the shop's files, which dedup stores once.
func fill(t *testing.T, pods []*harness.Pod) (map[string]string, int64) {
	t.Helper()
	want := map[string]string{}
	var total int64
	sizes := map[string]int64{"shop": 160 << 20, "db": 200 << 20, "cache": 160 << 20}
	for _, p := range pods {
		for vol, dir := range p.Dirs {
			seed := map[string]uint64{"shop": 7, "db": 8, "cache": 7}[p.Name] // shop and cache hold the same files
			if err := harness.FillVolume(dir, 400, sizes[p.Name], seed); err != nil {
				t.Fatal(err)
			}
			want[p.Name+"/"+vol], _ = harness.Describe(dir)
			total += sizes[p.Name]
		}
	}
	return want, total
}

// watch prints one line per second with the progress of each volume operation of kind (backup
// or restore) until done.
func watch(t *testing.T, c *harness.Cluster, kind, owner string, done func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !done() {
		if time.Since(start) > 10*time.Minute {
			t.Fatalf("the %s did not finish in 10 minutes", kind)
		}
		say("   %5.1fs  %s", time.Since(start).Seconds(), progressLine(c, kind, owner))
		time.Sleep(time.Second) // the demo's refresh rate; done() is the synchronisation
	}
	say("   %5.1fs  %s", time.Since(start).Seconds(), progressLine(c, kind, owner))
	return time.Since(start)
}

func progressLine(c *harness.Cluster, kind, owner string) string {
	var parts []string
	pvbs := &velerov1.PodVolumeBackupList{}
	_ = c.Client.List(context.Background(), pvbs, client.InNamespace(c.Install), client.MatchingLabels{velerov1.LabelBackupName: owner})
	pvrs := &velerov1.PodVolumeRestoreList{}
	_ = c.Client.List(context.Background(), pvrs, client.InNamespace(c.Install), client.MatchingLabels{"velero.io/restore-name": owner})
	add := func(pod, vol string, phase velerov1.PodVolumePhase, done, total, files, rate int64) {
		if phase == "" {
			phase = "New"
		}
		parts = append(parts, fmt.Sprintf("%s/%s %-10s %4.0f/%4.0f MiB %4d files %4.0f MB/s", pod, vol, phase,
			float64(done)/(1<<20), float64(total)/(1<<20), files, float64(rate)/1e6))
	}
	if kind == "backup" {
		for _, p := range pvbs.Items {
			add(p.Spec.Pod.Name, p.Spec.Volume, p.Status.Phase, p.Status.Progress.BytesDone, p.Status.Progress.TotalBytes, p.Status.Progress.FilesDone, p.Status.Progress.BytesPerSecond)
		}
	} else {
		for _, p := range pvrs.Items {
			add(p.Spec.Pod.Name, p.Spec.Volume, p.Status.Phase, p.Status.Progress.BytesDone, p.Status.Progress.TotalBytes, p.Status.Progress.FilesDone, p.Status.Progress.BytesPerSecond)
		}
	}
	if len(parts) == 0 {
		return "(waiting for the server to create the volume operations)"
	}
	sort.Strings(parts)
	return strings.Join(parts, " | ")
}

func verify(t *testing.T, pods []*harness.Pod, want map[string]string) {
	t.Helper()
	for _, p := range pods {
		for vol, dir := range p.Dirs {
			got, err := harness.Describe(dir)
			if err != nil {
				t.Fatal(err)
			}
			if got != want[p.Name+"/"+vol] {
				t.Fatalf("%s volume %s differs after the restore", p.Name, vol)
			}
		}
	}
}

func countFiles(want map[string]string) int {
	n := 0
	for _, d := range want {
		n += strings.Count(d, "\n") + 1
	}
	return n
}

// uploadedBy sums what a backup's volume operations wrote to the repository.
func uploadedBy(c *harness.Cluster, backup string) int64 {
	pvbs := &velerov1.PodVolumeBackupList{}
	_ = c.Client.List(context.Background(), pvbs, client.InNamespace(c.Install), client.MatchingLabels{velerov1.LabelBackupName: backup})
	var n int64
	for _, p := range pvbs.Items {
		n += p.Status.Progress.IncrementalBytes
	}
	return n
}

// storedBytes is the size of a filesystem location's directory (0 for S3).
func storedBytes(c *harness.Cluster, bsl string) int64 {
	var total int64
	_ = filepath.Walk(filepath.Join(c.Dir, "storage", bsl), func(_ string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			total += info.Size()
		}
		return nil
	})
	return total
}
