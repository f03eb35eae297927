package cluster

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/repoaccess"
	"github.com/ferry-backup/ferry/internal/repository/repotest/faults3"
	"github.com/ferry-backup/ferry/internal/uploader"
	"github.com/ferry-backup/ferry/test/harness"
)

// soakFaults are what the soak injects into a running Backup, one per Backup.
var soakFaults = []string{"none", "kill a node-agent", "kill the server", "ask to delete the backup", "kubectl delete the backup",
	"S3 answers 500", "S3 resets connections", "S3 stops answering"}

// TestSoakBackupsUnderRandomFaults runs Backups one after another on two nodes into an S3
// location behind the fault-injecting proxy, each with a fault picked at random: a process
// killed, a deletion asked or the Backup object deleted while its volumes are being backed up, or S3 misbehaving throughout (FERRY_SOAK_BACKUPS, default
// 50; FERRY_SOAK_SEED repeats a run). Then: every Backup and every PodVolumeBackup ended, no
// snapshot is left of a deleted Backup (orphans = 0), and every completed Backup restores byte
// for byte what its volumes held when it ran.
func TestSoakBackupsUnderRandomFaults(t *testing.T) {
	n := envInt(t, "FERRY_SOAK_BACKUPS", 50)
	seed := uint64(envInt(t, "FERRY_SOAK_SEED", int(time.Now().UnixNano()%1e9)))
	t.Logf("soak: %d backups, seed %d (FERRY_SOAK_SEED=%d repeats it)", n, seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	ctx := context.Background()

	c := harness.New(t)
	bsl, proxy := c.CreateFaultyS3BSL("soak", "3s")
	server := c.StartServer()
	nodes := []*harness.Node{c.StartNode("node-a"), c.StartNode("node-b")}
	var pods []*harness.Pod
	for i, node := range nodes {
		ns := c.Namespace(fmt.Sprintf("soak-%d", i))
		p := c.CreatePod(node, ns, "app", harness.VolumeSpec{Name: "data", Claim: "app-data"})
		if err := harness.FillVolume(p.Dirs["data"], 12, 24<<20, uint64(90+i)); err != nil {
			t.Fatal(err)
		}
		pods = append(pods, p)
	}
	namespaces := []string{pods[0].Namespace, pods[1].Namespace}

	type run struct {
		name, fault string
		want        map[string]string // namespace → volume description when it ran
		phase       velerov1.BackupPhase
		deleted     bool
	}
	runs := make([]run, 0, n)
	faults := map[string]int{}
	start := time.Now()
	for i := range n {
		r := run{name: fmt.Sprintf("soak-%02d", i), fault: soakFaults[rng.IntN(len(soakFaults))], want: map[string]string{}}
		for _, p := range pods {
			// A change per backup, so that each snapshot differs from the one before.
			if err := os.WriteFile(filepath.Join(p.Dirs["data"], fmt.Sprintf("change-%02d", i)), []byte(strings.Repeat(r.name, 1+rng.IntN(4096))), 0o644); err != nil {
				t.Fatal(err)
			}
			d, err := harness.Describe(p.Dirs["data"])
			if err != nil {
				t.Fatal(err)
			}
			r.want[p.Namespace] = d
		}
		// A fault aimed at a running backup needs one still running when it is seen running, and
		// a backup of one changed file takes milliseconds: its pack uploads are held until the
		// fault is in (1.5 s each, below the location's 3 s stall guard).
		held := slices.Contains([]string{"kill a node-agent", "kill the server", "ask to delete the backup", "kubectl delete the backup"}, r.fault)
		if held {
			proxy.Add(faults3.Fault{Kind: faults3.Delay, Method: http.MethodPut, KeyPrefix: bsl.Spec.ObjectStorage.Prefix + "/p", Delay: 1500 * time.Millisecond})
		}
		b := newBackup(t, c, r.name, bsl.Name, namespaces...)
		faults[r.fault]++
		switch r.fault {
		case "S3 answers 500":
			proxy.Add(faults3.Fault{Kind: faults3.Error, Method: http.MethodPut, Every: 3})
		case "S3 resets connections":
			proxy.Add(faults3.Fault{Kind: faults3.Reset, Every: 5})
		case "S3 stops answering":
			// One upload is never answered: the stall guard abandons it after 3 s and tries again.
			proxy.Add(faults3.Fault{Kind: faults3.Drop, Method: http.MethodPut, Limit: 1})
		case "kill a node-agent":
			node := nodes[rng.IntN(len(nodes))]
			if waitVolumeMoving(t, c, b) {
				node.Stop(syscall.SIGKILL)
				node.Start()
			}
		case "kill the server":
			if waitVolumeMoving(t, c, b) {
				server.Stop()
				server = c.StartServer()
			}
		case "ask to delete the backup":
			// As `velero backup delete` does: a DeleteBackupRequest stops it and deletes its data.
			if waitVolumeMoving(t, c, b) {
				if dbr := deleteRequest(t, c, b.Name); len(dbr.Status.Errors) > 0 {
					t.Errorf("deleting running backup %s: %v", b.Name, dbr.Status.Errors)
				}
				r.deleted = true
			}
		case "kubectl delete the backup":
			// Before it ended: it has no record yet, so the server stops it and deletes what it wrote.
			if waitVolumeMoving(t, c, b) {
				if err := c.Client.Delete(ctx, b); err != nil {
					t.Fatal(err)
				}
				r.deleted = true
			}
		}
		if held {
			proxy.Clear()
		}
		c.Eventually(3*time.Minute, func() (bool, string) {
			err := c.Client.Get(ctx, client.ObjectKeyFromObject(b), b)
			if r.deleted {
				return apierrors.IsNotFound(err), fmt.Sprintf("deleted backup %s still there: %s", r.name, b.Status.Phase)
			}
			return err == nil && backupEnded(b.Status.Phase), fmt.Sprintf("backup %s (%s) is %s", r.name, r.fault, b.Status.Phase)
		})
		proxy.Clear()
		r.phase = b.Status.Phase
		runs = append(runs, r)
	}
	t.Logf("soak: %d backups in %s; faults injected: %v; S3 requests %v, S3 faults %v", n, time.Since(start).Round(time.Second),
		faults, proxy.Counts().Requests, proxy.Counts().Injected)

	// Every operation ended.
	pvbs := &velerov1.PodVolumeBackupList{}
	if err := c.Client.List(ctx, pvbs, client.InNamespace(c.Install)); err != nil {
		t.Fatal(err)
	}
	for _, p := range pvbs.Items {
		if !p.Status.Phase.Terminal() {
			t.Errorf("PodVolumeBackup %s of backup %s did not end: %s %q", p.Name, p.Labels[velerov1.LabelBackupName], p.Status.Phase, p.Status.Message)
		}
	}
	// Outcomes, and no snapshot of a backup that is gone.
	outcomes := map[string]int{}
	exists := map[string]bool{}
	for _, r := range runs {
		if r.deleted {
			outcomes["deleted"]++
			continue
		}
		outcomes[string(r.phase)]++
		exists[r.name] = true
		if r.phase != velerov1.BackupPhaseCompleted {
			t.Errorf("backup %s with fault %q ended %s", r.name, r.fault, r.phase)
		}
	}
	access := repoaccess.New(repoaccess.Options{Client: c.Client, Namespace: c.Install, WorkDir: t.TempDir()})
	defer access.Close(ctx)
	rep, release, err := access.Open(ctx, bsl.Name, repoaccess.ForRestore)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	snaps, err := uploader.List(ctx, rep, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	orphans, checkpoints := 0, 0
	for _, s := range snaps {
		if !exists[s.Tags["backup"]] {
			orphans++
			t.Errorf("orphaned snapshot %s of backup %q (incomplete %v)", s.ID, s.Tags["backup"], s.Incomplete)
		} else if s.Incomplete {
			checkpoints++
		}
	}
	t.Logf("soak: outcomes %v; %d snapshots, orphans %d, checkpoints of kept backups %d", outcomes, len(snaps), orphans, checkpoints)

	// Every completed backup restores byte for byte.
	restored := 0
	for _, r := range runs {
		if r.deleted || r.phase != velerov1.BackupPhaseCompleted {
			continue
		}
		mapping := map[string]string{}
		targets := map[string]*harness.Pod{}
		for i, ns := range namespaces {
			to := c.Namespace("soak-restore")
			mapping[ns] = to
			targets[ns] = c.CreatePod(nodes[i], to, "app", harness.VolumeSpec{Name: "data", Claim: "app-data"})
		}
		rs := &velerov1.Restore{ObjectMeta: metav1.ObjectMeta{Namespace: c.Install, Name: r.name + "-restore"},
			Spec: velerov1.RestoreSpec{BackupName: r.name, NamespaceMapping: mapping}}
		if err := c.Client.Create(ctx, rs); err != nil {
			t.Fatal(err)
		}
		waitRestore(t, c, rs, velerov1.RestorePhaseCompleted)
		for ns, p := range targets {
			got, err := harness.Describe(p.Dirs["data"], ".velero")
			if err != nil {
				t.Fatal(err)
			}
			if got != r.want[ns] {
				t.Errorf("backup %s (fault %q): namespace %s restores differently", r.name, r.fault, ns)
			}
		}
		restored++
	}
	t.Logf("soak: %d completed backups restored byte for byte", restored)
}

// waitVolumeMoving waits until one of the backup's volumes is being backed up, and reports
// whether that happened before the backup ended (a fault then hits a running operation).
func waitVolumeMoving(t *testing.T, c *harness.Cluster, b *velerov1.Backup) bool {
	t.Helper()
	moving := false
	c.Eventually(time.Minute, func() (bool, string) {
		pvbs := &velerov1.PodVolumeBackupList{}
		if err := c.Client.List(context.Background(), pvbs, client.InNamespace(c.Install), client.MatchingLabels{velerov1.LabelBackupName: b.Name}); err != nil {
			return false, err.Error()
		}
		var phases []string
		for _, p := range pvbs.Items {
			if p.Status.Phase == velerov1.PodVolumePhaseInProgress {
				moving = true
				return true, ""
			}
			phases = append(phases, string(p.Status.Phase))
		}
		sort.Strings(phases)
		_ = c.Client.Get(context.Background(), client.ObjectKeyFromObject(b), b)
		return backupEnded(b.Status.Phase), fmt.Sprintf("backup %s is %s, its volumes %v", b.Name, b.Status.Phase, phases)
	})
	return moving
}

func envInt(t *testing.T, key string, def int) int {
	t.Helper()
	v := os.Getenv(key)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("%s=%q: not a number", key, v)
	}
	return n
}

func backupEnded(p velerov1.BackupPhase) bool {
	switch p {
	case velerov1.BackupPhaseCompleted, velerov1.BackupPhasePartiallyFailed, velerov1.BackupPhaseFailed, velerov1.BackupPhaseFailedValidation:
		return true
	}
	return false
}
