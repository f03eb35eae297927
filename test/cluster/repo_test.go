package cluster

import (
	"strings"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/test/harness"
)

// `ferry repo maintain --wait` runs one maintenance now, in a Job (a ferry-server maintain
// process here), whatever the schedule says, and reports its result; `ferry repo verify`
// verifies every backup of the repository.
func TestRepoMaintainAndVerifyFromTheCLI(t *testing.T) {
	c := harness.New(t)
	c.StartServer()
	node := c.StartNode("node-a")
	ns := c.Namespace("app")
	pod := c.CreatePod(node, ns, "db", harness.VolumeSpec{Name: "data", Claim: "db-data"})
	if err := harness.FillVolume(pod.Dirs["data"], 6, 4<<20, 17); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"first", "second"} {
		waitBackup(t, c, newBackup(t, c, name, "", ns), velerov1.BackupPhaseCompleted)
	}
	br := &velerov1.BackupRepository{}
	br.Namespace, br.Name = c.Install, "default-kopia"
	if err := c.Client.Get(t.Context(), client.ObjectKeyFromObject(br), br); err != nil {
		t.Fatal(err)
	}
	before := len(br.Status.RecentMaintenance)

	out, err := c.Ferry("repo", "maintain", "default-kopia", "--full", "--wait", "--timeout", "3m")
	if err != nil || !strings.Contains(out, "full maintenance of backup repository default-kopia succeeded in Job default-kopia-maintain-") {
		t.Fatalf("ferry repo maintain: %v\n%s", err, out)
	}
	if err := c.Client.Get(t.Context(), client.ObjectKeyFromObject(br), br); err != nil {
		t.Fatal(err)
	}
	runs := br.Status.RecentMaintenance
	if len(runs) <= before || runs[len(runs)-1].Result != velerov1.BackupRepositoryMaintenanceSucceeded ||
		!strings.Contains(runs[len(runs)-1].Message, "full maintenance") {
		t.Errorf("recent maintenance after the request: %s", describeRuns(runs))
	}
	if stats, ok := br.RepositoryStats(); !ok || stats.LastFull == nil || stats.Snapshots < 2 {
		t.Errorf("stats after the requested full run: %+v (%v)", stats, ok)
	}

	out, err = c.Ferry("repo", "verify", "default-kopia", "--percent", "100", "--timeout", "3m")
	if err != nil {
		t.Fatalf("ferry repo verify: %v\n%s", err, out)
	}
	for _, want := range []string{"Backup first:", "Backup second:", ns + "/db/data", "2 of 2 backups verified clean"} {
		if !strings.Contains(out, want) {
			t.Errorf("ferry repo verify output lacks %q:\n%s", want, out)
		}
	}
	t.Logf("ferry repo verify:\n%s", out)
}
