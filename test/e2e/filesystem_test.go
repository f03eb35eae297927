package e2e

import (
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/controller/backupsync"
	"github.com/ferry-backup/ferry/internal/repository/repotest"
)

// The file-system path on real pods: an application whose pods use CSI volumes and an emptyDir
// is backed up by the node-agent pod; its namespace is deleted and re-created from its manifests
// (fresh, empty claims, new pods), and a Restore fills the new pods' volumes. The application's
// own pods check every file, mode, time and symlink. Then once more, with a backup made after
// that restore; then the first backup is deleted with a DeleteBackupRequest and the second
// restores again; then the second's Backup object is deleted with kubectl and sync brings it
// back. Ferry's pods are never restarted in between.
func TestFileSystemBackupAndRestoreIntoARecreatedNamespace(t *testing.T) {
	c, ns := story(t, "shop")
	ctx := t.Context()
	podsBefore, err := c.FerryPods(ctx)
	must(t, err)
	app := c.NewApp(ns)
	t.Cleanup(app.Discard)
	must(t, app.Deploy(ctx))
	must(t, app.Fill(ctx, 400, 24, 8))
	want, err := app.Describe(ctx)
	must(t, err)
	files, size := Count(want)
	t.Logf("%d volumes, %d files, %.1f MiB", len(want), files, float64(size)/(1<<20))

	b, err := c.Backup(ctx, ns, nil, ns)
	must(t, err)
	must(t, c.WaitBackup(ctx, b, 5*time.Minute))
	if b.Status.Phase != velerov1.BackupPhaseCompleted {
		t.Fatalf("backup %s: %s: %s", b.Name, b.Status.Phase, b.Status.FailureReason)
	}
	pvbs, err := c.PodVolumeBackups(ctx, b.Name)
	must(t, err)
	if len(pvbs) != len(app.Volumes) {
		t.Fatalf("%d PodVolumeBackups, want one per volume (%d)", len(pvbs), len(app.Volumes))
	}
	agentLog, err := c.Kubectl(ctx, "", "logs", "-n", InstallNamespace, "-l", "name=node-agent", "--tail=-1")
	must(t, err)
	for _, p := range pvbs {
		if p.Status.Phase != velerov1.PodVolumePhaseCompleted || p.Status.SnapshotID == "" || p.Spec.Node != c.Node {
			t.Errorf("PodVolumeBackup %s: phase %s, snapshot %q, node %q (want Completed on %s)", p.Name, p.Status.Phase, p.Status.SnapshotID, p.Spec.Node, c.Node)
		}
		if !strings.Contains(agentLog, p.Name) {
			t.Errorf("the node-agent pod's log does not mention PodVolumeBackup %s", p.Name)
		}
	}
	seedCommandsWork(t, c, pvbs[0].Name)

	must(t, app.Delete(ctx))
	must(t, app.Deploy(ctx))
	empty, err := app.Describe(ctx)
	must(t, err)
	for v, listing := range empty {
		if listing != "" {
			t.Fatalf("the re-created %s:%s is not empty:\n%s", v.App, v.Dir, listing)
		}
	}

	restoreAndVerify(t, c, app, ns+"-restore", b.Name, want)

	// A backup made after a restore restores too, by the same ferry-server and node-agent
	// processes (their repository handles must see what was written since they opened them).
	must(t, app.Fill(ctx, 50, 4))
	want2, err := app.Describe(ctx)
	must(t, err)
	b2, err := c.Backup(ctx, ns+"-2", nil, ns)
	must(t, err)
	must(t, c.WaitBackup(ctx, b2, 5*time.Minute))
	if b2.Status.Phase != velerov1.BackupPhaseCompleted {
		t.Fatalf("backup %s: %s: %s", b2.Name, b2.Status.Phase, b2.Status.FailureReason)
	}
	must(t, app.Delete(ctx))
	must(t, app.Deploy(ctx))
	restoreAndVerify(t, c, app, ns+"-restore-2", b2.Name, want2)

	// The first backup's data is deleted by a DeleteBackupRequest: its snapshots are gone from
	// the repository (the kopia CLI says so), the second backup's stay and restore again.
	kopia, err := c.NewKopia(ctx, repotest.Tool(t, "kopia"), t.TempDir())
	must(t, err)
	first, err := c.SnapshotIDs(ctx, b.Name)
	must(t, err)
	second, err := c.SnapshotIDs(ctx, b2.Name)
	must(t, err)
	before, err := kopia.Snapshots(ctx)
	must(t, err)
	for _, id := range append(first, second...) {
		if !before[id] {
			t.Fatalf("the kopia CLI does not list snapshot %s before the deletion", id)
		}
	}
	asked := time.Now()
	dbr, err := c.DeleteBackup(ctx, b.Name, 3*time.Minute)
	must(t, err)
	if len(dbr.Status.Errors) > 0 {
		t.Fatalf("DeleteBackupRequest %s: %q", dbr.Name, dbr.Status.Errors)
	}
	took := time.Since(asked)
	after, err := kopia.Snapshots(ctx)
	must(t, err)
	for _, id := range first {
		if after[id] {
			t.Errorf("snapshot %s of the deleted backup %s is still in the repository", id, b.Name)
		}
	}
	for _, id := range second {
		if !after[id] {
			t.Errorf("snapshot %s of backup %s was deleted with backup %s", id, b2.Name, b.Name)
		}
	}
	if err := c.Client.Get(ctx, client.ObjectKeyFromObject(b), &velerov1.Backup{}); !apierrors.IsNotFound(err) {
		t.Errorf("Backup %s after its deletion: %v", b.Name, err)
	}
	t.Logf("DeleteBackupRequest for %s processed in %s: snapshots in the repository %d -> %d (kopia CLI)",
		b.Name, took.Round(time.Millisecond), len(before), len(after))
	must(t, app.Delete(ctx))
	must(t, app.Deploy(ctx))
	restoreAndVerify(t, c, app, ns+"-restore-3", b2.Name, want2)

	// kubectl delete removes the Backup object only; backup sync brings it back from the
	// location within one period (1 min by default).
	oldUID := b2.UID
	_, err = c.Kubectl(ctx, "", "delete", "backup", "-n", InstallNamespace, b2.Name)
	must(t, err)
	deleted := time.Now()
	must(t, c.Poll(ctx, backupsync.DefaultPeriod+30*time.Second, "backup sync to bring back "+b2.Name, func() (bool, string, error) {
		err := c.Client.Get(ctx, client.ObjectKeyFromObject(b2), b2)
		if apierrors.IsNotFound(err) {
			return false, "not back", nil
		}
		return err == nil && b2.UID != oldUID && b2.Status.Phase == velerov1.BackupPhaseCompleted, string(b2.Status.Phase), err
	}))
	t.Logf("kubectl delete backup %s: back by sync in %s", b2.Name, time.Since(deleted).Round(time.Second))
	kept, err := kopia.Snapshots(ctx)
	must(t, err)
	for _, id := range second {
		if !kept[id] {
			t.Errorf("snapshot %s went with the kubectl-deleted Backup %s", id, b2.Name)
		}
	}
	podsAfter, err := c.FerryPods(ctx)
	must(t, err)
	if podsAfter != podsBefore {
		t.Errorf("Ferry's pods were replaced or restarted during the story:\nbefore:\n%s\nafter:\n%s", podsBefore, podsAfter)
	}
}

// restoreAndVerify restores a backup into the application and checks every file from its pods.
func restoreAndVerify(t *testing.T, c *Cluster, app *App, name, backup string, want map[AppVolume]string) {
	t.Helper()
	ctx := t.Context()
	r, err := c.Restore(ctx, name, backup)
	must(t, err)
	must(t, c.WaitRestore(ctx, r, 5*time.Minute))
	if r.Status.Phase != velerov1.RestorePhaseCompleted {
		t.Fatalf("restore %s: %s: %s %v", r.Name, r.Status.Phase, r.Status.FailureReason, r.Status.ValidationErrors)
	}
	got, err := app.Describe(ctx)
	must(t, err)
	if diff := Compare(want, got); diff != "" {
		t.Fatalf("restore %s: the volumes differ from backup %s:\n%s", name, backup, diff)
	}
	t.Logf("restore %s of backup %s verified (%s by its status timestamps)", name, backup,
		r.Status.CompletionTimestamp.Sub(r.Status.StartTimestamp.Time))
}

// seedCommandsWork runs the kubectl commands Ferry's users know from Velero's documentation.
func seedCommandsWork(t *testing.T, c *Cluster, pvb string) {
	t.Helper()
	ctx := t.Context()
	for _, check := range []struct {
		args []string
		want string
	}{
		{[]string{"get", "podvolumebackups", "-n", InstallNamespace}, pvb},
		{[]string{"get", "podvolumebackup", pvb, "-n", InstallNamespace, "-o", "jsonpath={.status.progress}"}, "totalBytes"},
		{[]string{"get", "events", "-n", InstallNamespace, "--field-selector", "involvedObject.name=" + pvb}, "Completed"},
		{[]string{"logs", "-n", InstallNamespace, "-l", "name=node-agent", "--tail=-1"}, pvb},
		// The node-agent pod of one node. (`kubectl logs` has no --field-selector, although
		// Velero's troubleshooting notes write it so; `get pods` has.)
		{[]string{"get", "pods", "-n", InstallNamespace, "-l", "name=node-agent", "--field-selector", "spec.nodeName=" + c.Node, "-o", "name"}, "pod/node-agent-"},
	} {
		out, err := c.Kubectl(ctx, "", check.args...)
		if err != nil {
			t.Errorf("%v", err)
		} else if !strings.Contains(out, check.want) {
			t.Errorf("kubectl %s: no %q in\n%s", strings.Join(check.args, " "), check.want, out)
		}
	}
}
