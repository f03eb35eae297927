package e2e

import (
	"strings"
	"testing"
	"time"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
)

// The file-system path on real pods: an application whose pods use CSI volumes and an emptyDir
// is backed up by the node-agent pod; its namespace is deleted and re-created from its manifests
// (fresh, empty claims, new pods), and a Restore fills the new pods' volumes. The application's
// own pods check every file, mode, time and symlink. Then once more, with a backup made after
// that restore.
func TestFileSystemBackupAndRestoreIntoARecreatedNamespace(t *testing.T) {
	c, ns := story(t, "shop")
	ctx := t.Context()
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
		{[]string{"get", "pods", "-n", InstallNamespace, "-l", "name=node-agent", "--field-selector", "spec.nodeName=" + c.Node, "-o", "name"}, "pod/ferry-node-agent-"},
	} {
		out, err := c.Kubectl(ctx, "", check.args...)
		if err != nil {
			t.Errorf("%v", err)
		} else if !strings.Contains(out, check.want) {
			t.Errorf("kubectl %s: no %q in\n%s", strings.Join(check.args, " "), check.want, out)
		}
	}
}
