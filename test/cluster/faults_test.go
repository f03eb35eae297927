package cluster

import (
	"net/http"
	"os"
	"testing"
	"time"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/repository/repotest/faults3"
	"github.com/ferry-backup/ferry/test/harness"
)

// A node-agent backs a volume up into S3 while the endpoint answers every second upload with a
// 500, and restores it byte for byte: the S3 location of the simulated cluster goes through the
// fault-injecting proxy (the wiring the fault stories build on).
func TestBackupThroughServerErrorsCompletes(t *testing.T) {
	c := harness.New(t)
	bslObj, proxy := c.CreateFaultyS3BSL("faulty", "30s")
	bsl := bslObj.Name
	node := c.StartNode("node-a")
	pod := c.CreatePod(node, c.Namespace("shop"), "web", harness.VolumeSpec{Name: "data", Claim: "web-data"})
	if err := harness.FillVolume(pod.Dirs["data"], 20, 4<<20, 7); err != nil {
		t.Fatal(err)
	}
	want, err := harness.Describe(pod.Dirs["data"])
	if err != nil {
		t.Fatal(err)
	}
	proxy.Add(faults3.Fault{Kind: faults3.Error, Method: http.MethodPut, Every: 2})
	pvb := c.BackupVolume(pod, "data", "b1-web-data", func(p *velerov1.PodVolumeBackup) { p.Spec.BackupStorageLocation = bsl })
	c.WaitPhase(pvb, velerov1.PodVolumePhaseCompleted, 2*time.Minute)
	counts := proxy.Counts()
	t.Logf("backup through the proxy: %v requests, %d answered with a 500", counts.Requests, counts.Injected[faults3.Error])
	if counts.Injected[faults3.Error] == 0 {
		t.Fatal("no fault was injected: the node-agent did not go through the proxy")
	}
	proxy.Clear()
	if err := os.RemoveAll(pod.Dirs["data"]); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(pod.Dirs["data"], 0o755); err != nil {
		t.Fatal(err)
	}
	pvr := c.RestoreVolume(pod, "data", pvb.Status.SnapshotID, "r1-web-data",
		func(p *velerov1.PodVolumeRestore) { p.Spec.BackupStorageLocation = bsl })
	c.WaitPhase(pvr, velerov1.PodVolumePhaseCompleted, 2*time.Minute)
	if got, err := harness.Describe(pod.Dirs["data"]); err != nil || got != want {
		t.Fatalf("restored differently (%v):\nwant:\n%.1000s\ngot:\n%.1000s", err, want, got)
	}
}
