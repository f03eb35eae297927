package compat

import (
	"strings"
	"testing"
	"time"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/test/harness"
)

// Under Velero's CRDs the API server refuses a field selector on spec.node. The node-agent must
// still start, back up its own node's volumes, and leave another node's PodVolumeBackup alone.
func TestNodeAgentUnderVeleroCRDs(t *testing.T) {
	c := harness.New(t)
	nodeA := c.StartNode("node-a")
	ns := c.Namespace("app")
	web := c.CreatePod(nodeA, ns, "web", harness.VolumeSpec{Name: "data", Claim: "web-data"})
	if err := harness.FillVolume(web.Dirs["data"], 4, 1<<20, 1); err != nil {
		t.Fatal(err)
	}
	// Created first, so the agent has seen it by the time it finishes its own.
	other := c.BackupVolume(web, "data", "other-node", func(p *velerov1.PodVolumeBackup) { p.Spec.Node = "node-b" })
	own := c.BackupVolume(web, "data", "own-node")
	c.WaitPhase(own, velerov1.PodVolumePhaseCompleted, 2*time.Minute)
	if own.Status.SnapshotID == "" || own.Status.IncrementalBytes == 0 || own.Status.IncrementalBytes != own.Status.Progress.IncrementalBytes {
		t.Errorf("own node's backup completed without a snapshot or the incrementalBytes Velero reads: %+v", own.Status)
	}
	c.WaitPhase(other, "", time.Second)
	log := nodeA.Log()
	if strings.Contains(log, "other-node") {
		t.Errorf("node-a worked on node-b's PodVolumeBackup:\n%s", log)
	}
	if !strings.Contains(log, "watching every PodVolumeBackup of the namespace") {
		t.Errorf("node-a did not report the fallback from the spec.node field selector:\n%s", log)
	}
}
