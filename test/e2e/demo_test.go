package e2e

import (
	"context"
	"fmt"
	"maps"
	"os"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	velerov2alpha1 "github.com/ferry-backup/ferry/api/v2alpha1"
)

func say(format string, args ...any) { fmt.Printf(format+"\n", args...) }

// TestDemo is `make demo`: Ferry's main job on the real cluster, told as it happens. An
// application with three volumes (two CSI claims and an emptyDir) gets a few hundred MiB of files;
// a backup runs with the CLI's live progress (`ferry backup create --wait`); the namespace is deleted and re-created from its manifests;
// a restore fills the new, empty volumes; every file is checked from inside the pods. Then the CSI
// data mover: a backup with snapshotMoveData moves both claims from snapshots through mover pods
// (incremental on the file-system path's snapshots), the namespace is deleted, and a restore into
// nothing re-creates it with both claims filled before the manifests are applied again.
func TestDemo(t *testing.T) {
	if os.Getenv("FERRY_DEMO") != "1" {
		t.Skip("the demo runs with FERRY_DEMO=1 (make demo)")
	}
	c, ns := story(t, "demo")
	ctx := t.Context()
	start := time.Now()
	app := c.NewApp(ns)
	say("== Ferry demo on a real Kubernetes node (%s): kubelet, containerd, CSI volumes; backups go to S3 at %s", c.Node, c.Env["CLUSTER_S3_URL"])
	say("   look around while it runs: kubectl --kubeconfig %s get backups,podvolumebackups,restores,podvolumerestores -n %s", c.Kubeconfig, InstallNamespace)
	must(t, app.Deploy(ctx))
	must(t, app.Fill(ctx, 1000, 96, 64))
	// The emptyDir holds a copy of the shop's largest file: the repository stores it once.
	shop, err := app.Pod(ctx, "shop")
	must(t, err)
	_, err = c.Exec(ctx, ns, shop, "cp -p /data/big0 /cache/copy-of-data-big0")
	must(t, err)
	want, err := app.Describe(ctx)
	must(t, err)
	files, total := Count(want)
	say("== application %s: StatefulSet shop (CSI claim + emptyDir), Deployment web (CSI claim); %d files, %.0f MiB", ns, files, mib(total))

	b := &velerov1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: InstallNamespace, Name: "demo-backup"}}
	say("== ferry backup create %s --include-namespaces %s --default-volumes-to-fs-backup --wait", b.Name, ns)
	must(t, c.FerryFollow(ctx, "-n", InstallNamespace, "backup", "create", b.Name, "--include-namespaces", ns, "--default-volumes-to-fs-backup", "--wait"))
	must(t, c.Client.Get(ctx, client.ObjectKeyFromObject(b), b))

	say("== deleting namespace %s (pods, claims and their volumes) and re-creating it from its manifests", ns)
	must(t, app.Delete(ctx))
	must(t, app.Deploy(ctx))
	rs := &velerov1.Restore{ObjectMeta: metav1.ObjectMeta{Namespace: InstallNamespace, Name: "demo-restore"}}
	say("== ferry restore create %s --from-backup %s --wait", rs.Name, b.Name)
	must(t, c.FerryFollow(ctx, "-n", InstallNamespace, "restore", "create", rs.Name, "--from-backup", b.Name, "--wait"))
	must(t, c.Client.Get(ctx, client.ObjectKeyFromObject(rs), rs))
	got, err := app.Describe(ctx)
	must(t, err)
	if diff := Compare(want, got); diff != "" {
		t.Fatalf("the restored volumes differ:\n%s", diff)
	}
	say("== every file, mode, time and symlink checked from inside the new pods")

	// The CSI data mover: the same namespace, its claims moved from snapshots, then restored into
	// an empty namespace. (The emptyDir is not annotated: it lives in its pod only and could not be
	// restored without one; the e2e story TestBackupMovesSnapshotsAndRestoresIntoAnEmptyNamespace
	// shows both paths in one backup.)
	again := &velerov1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: InstallNamespace, Name: "demo-moved"}}
	say("== ferry backup create %s --include-namespaces %s --snapshot-move-data --wait: CSI snapshots of both claims, each moved by its own mover pod", again.Name, ns)
	must(t, c.FerryFollow(ctx, "-n", InstallNamespace, "backup", "create", again.Name, "--include-namespaces", ns, "--snapshot-move-data", "--wait"))
	must(t, c.Client.Get(ctx, client.ObjectKeyFromObject(again), again))
	say("== deleting namespace %s; restoring into nothing: the restore re-creates the namespace and the claims, filled before any pod exists", ns)
	must(t, app.Delete(ctx))
	moved := &velerov1.Restore{ObjectMeta: metav1.ObjectMeta{Namespace: InstallNamespace, Name: "demo-restore-moved"}}
	say("== ferry restore create %s --from-backup %s --wait", moved.Name, again.Name)
	must(t, c.FerryFollow(ctx, "-n", InstallNamespace, "restore", "create", moved.Name, "--from-backup", again.Name, "--wait"))
	must(t, c.Client.Get(ctx, client.ObjectKeyFromObject(moved), moved))
	say("== restore %s: %s; now the application's manifests again", moved.Name, moved.Status.Phase)
	must(t, app.Deploy(ctx))
	gotMoved, err := app.Describe(ctx)
	must(t, err)
	cache := AppVolume{App: "shop", Dir: "/cache"}
	delete(gotMoved, cache)
	wantClaims := maps.Clone(want)
	delete(wantClaims, cache)
	if diff := Compare(wantClaims, gotMoved); diff != "" {
		t.Fatalf("the claims restored into the empty namespace differ:\n%s", diff)
	}
	say("== both claims checked file by file from inside the new pods (the emptyDir was not in this backup and starts empty)")
	stored, err := c.storedBytes(ctx)
	must(t, err)
	pods, _ := c.Kubectl(ctx, "", "get", "pods", "-n", InstallNamespace, "-o", "wide")

	backupTime, restoreTime, againTime := took(b.Status.StartTimestamp, b.Status.CompletionTimestamp),
		took(rs.Status.StartTimestamp, rs.Status.CompletionTimestamp), took(again.Status.StartTimestamp, again.Status.CompletionTimestamp)
	movedTime := took(moved.Status.StartTimestamp, moved.Status.CompletionTimestamp)
	say("== summary (durations from the objects' status timestamps, which have 1 s resolution)")
	say("   data:        %d volumes, %.1f MiB in %d files", len(want), mib(total), files)
	say("   backup:      %s (%s)", backupTime, rate(total, backupTime))
	say("   restore:     %s (%s), into a re-created namespace", restoreTime, rate(total, restoreTime))
	say("   repository:  %.1f MiB in S3 for %.1f MiB of data (/cache holds a copy of /data/big0: stored once)", mib(stored), mib(total))
	say("   data mover:  backup %s, %.1f KiB uploaded (the file-system path's snapshots are the parents: nothing changed)",
		againTime, float64(c.uploadedBy(ctx, again.Name))/1024)
	say("                restore into the deleted namespace %s", movedTime)
	say("   verified:    every byte, mode, time and symlink of every volume, from inside the pods")
	say("   demo took:   %s", time.Since(start).Round(time.Second))
	say("== Ferry's pods on the node (kubectl get pods -n %s -o wide):\n%s", InstallNamespace, indent(pods))
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

func took(from, to *metav1.Time) time.Duration {
	if from == nil || to == nil {
		return 0
	}
	return to.Sub(from.Time)
}

func rate(bytes int64, d time.Duration) string {
	if d <= 0 {
		return "under 1 s"
	}
	return fmt.Sprintf("%.0f MB/s", float64(bytes)/1e6/d.Seconds())
}

// watch prints one progress line per second for the volume operations of a backup or a restore
// until ended reports true. The one-second ticker is the display's refresh rate; ended, which
// reads the object, is what decides.
// uploadedBy sums what a backup's volume operations wrote to the repository.
func (c *Cluster) uploadedBy(ctx context.Context, backup string) int64 {
	pvbs, _ := c.PodVolumeBackups(ctx, backup)
	var n int64
	for _, p := range pvbs {
		n += p.Status.Progress.IncrementalBytes
	}
	dus := &velerov2alpha1.DataUploadList{}
	_ = c.Client.List(ctx, dus, client.InNamespace(InstallNamespace), client.MatchingLabels{velerov1.LabelBackupName: backup})
	for _, d := range dus.Items {
		n += d.Status.Progress.IncrementalBytes
	}
	return n
}

// storedBytes is what the location's bucket holds.
func (c *Cluster) storedBytes(ctx context.Context) (int64, error) {
	objects, err := c.StoredObjects(ctx)
	var n int64
	for _, size := range objects {
		n += size
	}
	return n, err
}
