package cluster

import (
	"context"
	"os"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/test/harness"
)

func waitBackup(t *testing.T, c *harness.Cluster, b *velerov1.Backup, want velerov1.BackupPhase) {
	t.Helper()
	c.Eventually(3*time.Minute, func() (bool, string) {
		_ = c.Client.Get(context.Background(), client.ObjectKeyFromObject(b), b)
		return b.Status.Phase == want, "backup " + b.Name + " is " + string(b.Status.Phase) + ": " + b.Status.FailureReason
	})
}

func waitRestore(t *testing.T, c *harness.Cluster, r *velerov1.Restore, want velerov1.RestorePhase) {
	t.Helper()
	c.Eventually(3*time.Minute, func() (bool, string) {
		_ = c.Client.Get(context.Background(), client.ObjectKeyFromObject(r), r)
		return r.Status.Phase == want, "restore " + r.Name + " is " + string(r.Status.Phase) + ": " + r.Status.FailureReason
	})
}

// A Backup of two namespaces on two nodes, restored into mapped namespaces byte for byte; a
// second backup after a small change uploads only the change.
func TestServerBacksUpAndRestoresNamespaces(t *testing.T) {
	c := harness.New(t)
	c.StartServer()
	nodeA, nodeB := c.StartNode("node-a"), c.StartNode("node-b")
	shop, blog := c.Namespace("shop"), c.Namespace("blog")
	pods := []*harness.Pod{
		c.CreatePod(nodeA, shop, "web", harness.VolumeSpec{Name: "data", Claim: "web-data"}),
		c.CreatePod(nodeB, blog, "db", harness.VolumeSpec{Name: "data", Claim: "db-data"}, harness.VolumeSpec{Name: "scratch"}),
	}
	want := map[string]string{}
	for i, p := range pods {
		for vol, dir := range p.Dirs {
			if err := harness.FillVolume(dir, 20, 12<<20, uint64(50+i*10+len(vol))); err != nil {
				t.Fatal(err)
			}
			want[p.Name+"/"+vol], _ = harness.Describe(dir)
		}
	}
	yes := true
	b := &velerov1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: c.Install, Name: "nightly"},
		Spec: velerov1.BackupSpec{IncludedNamespaces: []string{shop, blog}, DefaultVolumesToFsBackup: &yes}}
	if err := c.Client.Create(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	waitBackup(t, c, b, velerov1.BackupPhaseCompleted)
	if got := b.Status.PodVolumeBackups; got == nil || got.Total != 3 || got.Completed != 3 {
		t.Fatalf("volume counts = %+v, want 3 completed", got)
	}

	// Restore into new namespaces, on the other nodes.
	shopR, blogR := c.Namespace("shop-restored"), c.Namespace("blog-restored")
	targets := map[string]*harness.Pod{
		"web": c.CreatePod(nodeB, shopR, "web", harness.VolumeSpec{Name: "data", Claim: "web-data"}),
		"db":  c.CreatePod(nodeA, blogR, "db", harness.VolumeSpec{Name: "data", Claim: "db-data"}, harness.VolumeSpec{Name: "scratch"}),
	}
	rs := &velerov1.Restore{ObjectMeta: metav1.ObjectMeta{Namespace: c.Install, Name: "nightly-restore"},
		Spec: velerov1.RestoreSpec{BackupName: "nightly", NamespaceMapping: map[string]string{shop: shopR, blog: blogR}}}
	if err := c.Client.Create(context.Background(), rs); err != nil {
		t.Fatal(err)
	}
	waitRestore(t, c, rs, velerov1.RestorePhaseCompleted)
	for name, p := range targets {
		for vol, dir := range p.Dirs {
			got, _ := harness.Describe(dir)
			if got != want[name+"/"+vol] {
				t.Errorf("%s volume %s restored differently", name, vol)
			}
		}
	}

	// A small change: the next backup uploads about that much.
	if err := os.WriteFile(pods[0].Dirs["data"]+"/changed.txt", make([]byte, 256<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	b2 := &velerov1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: c.Install, Name: "nightly-2"},
		Spec: velerov1.BackupSpec{IncludedNamespaces: []string{shop, blog}, DefaultVolumesToFsBackup: &yes}}
	if err := c.Client.Create(context.Background(), b2); err != nil {
		t.Fatal(err)
	}
	waitBackup(t, c, b2, velerov1.BackupPhaseCompleted)
	pvbs := &velerov1.PodVolumeBackupList{}
	if err := c.Client.List(context.Background(), pvbs, client.InNamespace(c.Install), client.MatchingLabels{velerov1.LabelBackupName: "nightly-2"}); err != nil {
		t.Fatal(err)
	}
	var uploaded int64
	for _, p := range pvbs.Items {
		uploaded += p.Status.Progress.IncrementalBytes
	}
	if uploaded > 2<<20 {
		t.Errorf("the second backup uploaded %d bytes for a 256 KiB change", uploaded)
	}
}
