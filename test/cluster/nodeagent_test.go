package cluster

import (
	"os"
	"strings"
	"testing"
	"time"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/test/harness"
)

// Two pods on two nodes are backed up at the same time, each by its own node's agent; their
// volumes are then wiped and restored byte for byte. Once into a filesystem location, once into
// the real S3 server.
func TestBackupAndRestoreAcrossTwoNodes(t *testing.T) {
	t.Run("filesystem", func(t *testing.T) { backupAndRestoreAcrossTwoNodes(t, false) })
	t.Run("s3", func(t *testing.T) { backupAndRestoreAcrossTwoNodes(t, true) })
}

func backupAndRestoreAcrossTwoNodes(t *testing.T, s3 bool) {
	c := harness.New(t)
	bsl := "default"
	if s3 {
		bsl = c.CreateS3BSL("s3").Name
	}
	onBSL := func(p *velerov1.PodVolumeBackup) { p.Spec.BackupStorageLocation = bsl }
	restoreFrom := func(p *velerov1.PodVolumeRestore) { p.Spec.BackupStorageLocation = bsl }
	nodeA, nodeB := c.StartNode("node-a"), c.StartNode("node-b")
	ns := c.Namespace("shop")
	web := c.CreatePod(nodeA, ns, "web", harness.VolumeSpec{Name: "data", Claim: "web-data"}, harness.VolumeSpec{Name: "cache"})
	db := c.CreatePod(nodeB, ns, "db", harness.VolumeSpec{Name: "data", Claim: "db-data"})
	for i, dir := range []string{web.Dirs["data"], web.Dirs["cache"], db.Dirs["data"]} {
		if err := harness.FillVolume(dir, 40, 8<<20, uint64(i+1)); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]string{}
	for key, dir := range map[string]string{"web-data": web.Dirs["data"], "web-cache": web.Dirs["cache"], "db-data": db.Dirs["data"]} {
		d, err := harness.Describe(dir)
		if err != nil {
			t.Fatal(err)
		}
		want[key] = d
	}

	start := time.Now()
	backups := map[string]*velerov1.PodVolumeBackup{
		"web-data":  c.BackupVolume(web, "data", "b1-web-data", onBSL),
		"web-cache": c.BackupVolume(web, "cache", "b1-web-cache", onBSL),
		"db-data":   c.BackupVolume(db, "data", "b1-db-data", onBSL),
	}
	for _, pvb := range backups {
		c.WaitPhase(pvb, velerov1.PodVolumePhaseCompleted, 2*time.Minute)
		if pvb.Status.SnapshotID == "" || pvb.Status.Progress.BytesDone != pvb.Status.Progress.TotalBytes || pvb.Status.Progress.TotalBytes < 8_000_000 {
			t.Errorf("%s: status %+v", pvb.Name, pvb.Status)
		}
		node := nodeA
		if pvb.Spec.Node == nodeB.Name {
			node = nodeB
		}
		if !strings.HasPrefix(pvb.Status.Path, node.Root) {
			t.Errorf("%s was read from %s, not from its node %s", pvb.Name, pvb.Status.Path, node.Name)
		}
	}
	t.Logf("three backups on two nodes took %s", time.Since(start).Round(time.Millisecond))
	if strings.Contains(nodeA.Log(), "b1-db-data") || strings.Contains(nodeB.Log(), "b1-web") {
		t.Error("a node-agent worked on another node's PodVolumeBackup")
	}

	for _, dir := range []string{web.Dirs["data"], web.Dirs["cache"], db.Dirs["data"]} {
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	restores := map[string]*velerov1.PodVolumeRestore{
		"web-data":  c.RestoreVolume(web, "data", backups["web-data"].Status.SnapshotID, "r1-web-data", restoreFrom),
		"web-cache": c.RestoreVolume(web, "cache", backups["web-cache"].Status.SnapshotID, "r1-web-cache", restoreFrom),
		// As Velero creates them: without spec.node; the node of the target pod takes it.
		"db-data": c.RestoreVolume(db, "data", backups["db-data"].Status.SnapshotID, "r1-db-data", restoreFrom,
			func(p *velerov1.PodVolumeRestore) { p.Spec.Node = "" }),
	}
	start = time.Now()
	dirs := map[string]string{"web-data": web.Dirs["data"], "web-cache": web.Dirs["cache"], "db-data": db.Dirs["data"]}
	for key, pvr := range restores {
		c.WaitPhase(pvr, velerov1.PodVolumePhaseCompleted, 2*time.Minute)
		got, err := harness.Describe(dirs[key])
		if err != nil {
			t.Fatal(err)
		}
		if got != want[key] {
			t.Errorf("%s restored differently:\nwant:\n%.1500s\ngot:\n%.1500s", key, want[key], got)
		}
		wantNode := web.Spec.NodeName
		if key == "db-data" {
			wantNode = db.Spec.NodeName
		}
		if pvr.Status.Node != wantNode {
			t.Errorf("%s: status.node %q, want %q", pvr.Name, pvr.Status.Node, wantNode)
		}
	}
	t.Logf("three restores on two nodes took %s", time.Since(start).Round(time.Millisecond))
}
