package cluster

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/testenv"
	"github.com/ferry-backup/ferry/test/harness"
)

// The API requests one backup of three pod volumes on two nodes costs, by verb and resource, from
// the API server's apiserver_request_total, less the test's own (creating the Backup and
// polling it); run with -v to read the figures. The Backup's status is patched when it starts,
// when its progress is first summed up, when a volume ends and when it ends (volumes+3 at most),
// not at every progress tick of its PodVolumeBackups.
func TestAPIRequestsPerBackup(t *testing.T) {
	const volumes = 3
	c := harness.New(t)
	c.StartServer()
	nodeA, nodeB := c.StartNode("node-a"), c.StartNode("node-b")
	ns := c.Namespace("shop")
	pods := []*harness.Pod{
		c.CreatePod(nodeA, ns, "web", harness.VolumeSpec{Name: "data", Claim: "web-data"}),
		c.CreatePod(nodeB, ns, "db", harness.VolumeSpec{Name: "data", Claim: "db-data"}, harness.VolumeSpec{Name: "scratch"}),
	}
	for i, p := range pods {
		for vol, dir := range p.Dirs {
			if err := harness.FillVolume(dir, 40, 192<<20, uint64(70+i*10+len(vol))); err != nil {
				t.Fatal(err)
			}
		}
	}
	cfg, own := testenv.CountRequests(c.Env.Config)
	test, err := client.New(cfg, client.Options{Scheme: c.Client.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	// Let the processes settle (caches synced, locations checked) before counting.
	yes := true
	warmup := &velerov1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: c.Install, Name: "warmup"},
		Spec: velerov1.BackupSpec{IncludedNamespaces: []string{c.Namespace("empty")}, DefaultVolumesToFsBackup: &yes}}
	if err := c.Client.Create(context.Background(), warmup); err != nil {
		t.Fatal(err)
	}
	waitBackup(t, c, warmup, velerov1.BackupPhaseCompleted)

	before, ownBefore := apiRequests(t, c), own.Snapshot()
	start := time.Now()
	b := &velerov1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: c.Install, Name: "counted"},
		Spec: velerov1.BackupSpec{IncludedNamespaces: []string{ns}, DefaultVolumesToFsBackup: &yes}}
	if err := test.Create(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	c.Eventually(3*time.Minute, func() (bool, string) {
		_ = test.Get(context.Background(), client.ObjectKeyFromObject(b), b)
		return b.Status.Phase == velerov1.BackupPhaseCompleted, "backup is " + string(b.Status.Phase)
	})
	elapsed := time.Since(start)
	after := apiRequests(t, c)
	_, ownTotal := own.Since(ownBefore)

	diff, total := map[string]int{}, 0
	for k, v := range after {
		if n := v - before[k]; n > 0 && !strings.HasPrefix(k, "WATCH ") {
			diff[k], total = n, total+n
		}
	}
	var lines []string
	for _, k := range slices.Sorted(maps.Keys(diff)) {
		lines = append(lines, fmt.Sprintf("%6d %s", diff[k], k))
	}
	ferry := total - ownTotal
	t.Logf("backup of 3 volumes (%d MiB) on 2 nodes in %v: %d API requests in all (watches not counted), %d of them the test's, %d Ferry's:\n%s",
		volumes*192, elapsed.Round(100*time.Millisecond), total, ownTotal, ferry, strings.Join(lines, "\n"))
	// The Backup's status changes at its start, its first sum, once per volume done and at its
	// end: volumes+3. A reconcile woken by a PodVolumeBackup can read a Backup from a cache
	// that has not yet seen the server's own last patch and send it again (6 was seen): up to
	// one repeat per volume is allowed. What this guards against — a patch per progress report
	// of each volume, a second apart for the whole backup — would be far more.
	if got, ticks := diff["PATCH backups/status"], diff["PATCH podvolumebackups/status"]; got > 2*volumes+3 {
		t.Errorf("the Backup's status was patched %d times (its PodVolumeBackups' %d times), want at most %d", got, ticks, 2*volumes+3)
	}
}

// apiRequests reads apiserver_request_total from the API server's metrics, summed by
// "VERB resource[/subresource]".
func apiRequests(t *testing.T, c *harness.Cluster) map[string]int {
	t.Helper()
	cs, err := kubernetes.NewForConfig(c.Env.Config)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := cs.RESTClient().Get().AbsPath("/metrics").DoRaw(context.Background())
	if err != nil {
		t.Fatalf("API server metrics: %v", err)
	}
	counts := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "apiserver_request_total{")
		if !ok {
			continue
		}
		labels, value, _ := strings.Cut(line, "} ")
		n, err := strconv.ParseFloat(value, 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", sc.Text(), err)
		}
		l := map[string]string{}
		for _, kv := range strings.Split(labels, ",") {
			k, v, _ := strings.Cut(kv, "=")
			l[k] = strings.Trim(v, `"`)
		}
		key := l["verb"] + " " + l["resource"]
		if l["subresource"] != "" {
			key += "/" + l["subresource"]
		}
		counts[key] += int(n)
	}
	return counts
}
