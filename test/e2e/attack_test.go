package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/repository/repotest"
)

// A tenant attacks the node-agent from its own pod, as issue 9 describes: while Ferry backs up
// and restores the shop's volume, the shop pod swaps its files and directories for symlinks to
// another pod's volume as the node-agent sees it (/host_pods/<uid>/volumes/...) and to the
// agent's own service-account token, in a loop. No snapshot of the shop may hold a byte of
// either, and the other pod's volume must not change.
func TestTenantRacingWithSymlinksGetsNothingOutOfItsVolume(t *testing.T) {
	c, ns := story(t, "tenant")
	ctx := t.Context()
	app := c.NewApp(ns)
	t.Cleanup(app.Discard)
	must(t, app.Deploy(ctx))
	shop, err := app.Pod(ctx, "shop")
	must(t, err)
	web, err := app.Pod(ctx, "web")
	must(t, err)

	// The victim: the web pod's volume, with a secret in it.
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	secret := "VICTIM-" + hex.EncodeToString(b)
	_, err = c.Exec(ctx, ns, web, "mkdir -p /content/private && echo "+secret+" > /content/private/secret.txt && sync")
	must(t, err)
	victimDir, err := c.volumeOnNode(ctx, ns, web, "web-content")
	must(t, err)
	victimBefore, err := c.Exec(ctx, ns, web, "cd /content && "+describeScript)
	must(t, err)

	// The attacker's own data, then its loop.
	_, err = c.Exec(ctx, ns, shop, `set -e; cd /data; i=0; while [ $i -lt 12 ]; do mkdir -p d$i; head -c 8192 /dev/urandom > d$i/f; head -c 8192 /dev/urandom > f$i; i=$((i+1)); done; sync`)
	must(t, err)
	targets := []string{victimDir + "/private/secret.txt", victimDir + "/private", "/var/run/secrets/kubernetes.io/serviceaccount/token",
		"/var/run/secrets/kubernetes.io/serviceaccount"}
	loop := fmt.Sprintf(`trap '' HUP; cd /data; rm -f .stop; n=0
while [ ! -f .stop ]; do
  for i in 0 1 2 3 4 5 6 7 8 9 10 11; do
    t=$(echo %q | cut -d' ' -f$(( (n %% 4) + 1 )))
    mv f$i f$i.aside && ln -s "$t" f$i && rm -f f$i; mv f$i.aside f$i
    mv d$i d$i.aside && ln -s "$t" d$i && rm -f d$i; mv d$i.aside d$i
    touch f$i d$i/f # changed: the next backup reads them again instead of taking them from its parent
    [ -p p$i ] || mkfifo p$i
    n=$((n+1)); echo $n > /tmp/swaps
  done
done
`, strings.Join(targets, " "))
	_, err = c.Kubectl(ctx, loop, "exec", "-i", "-n", ns, shop, "--", "sh", "-c", "cat > /tmp/attack.sh")
	must(t, err)
	_, err = c.Exec(ctx, ns, shop, "sh /tmp/attack.sh > /tmp/attack.log 2>&1 < /dev/null &") // the tools image has no nohup
	must(t, err)
	// The backups start once the attacker's loop runs (seen once: it never started).
	must(t, c.Poll(ctx, time.Minute, "the attacker's loop running", func() (bool, string, error) {
		swaps, _ := c.Exec(ctx, ns, shop, "cat /tmp/swaps 2>/dev/null")
		log, _ := c.Exec(ctx, ns, shop, "cat /tmp/attack.log")
		return strings.TrimSpace(swaps) != "", "attack.log: " + log, nil
	}))
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			_, _ = c.Exec(ctx, ns, shop, "touch /data/.stop")
		}
	}
	t.Cleanup(stop)

	// Backups of the shop only (the attacker touches its files, so every backup reads them).
	const rounds = 6
	var backups []string
	reported := 0
	for i := range rounds {
		bk, err := c.Backup(ctx, fmt.Sprintf("%s-%d", ns, i), func(b *velerov1.Backup) {
			b.Spec.LabelSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "shop"}}
		}, ns)
		must(t, err)
		must(t, c.WaitBackup(ctx, bk, 5*time.Minute))
		if bk.Status.Phase != velerov1.BackupPhaseCompleted && bk.Status.Phase != velerov1.BackupPhasePartiallyFailed {
			t.Fatalf("backup %s: %s: %s", bk.Name, bk.Status.Phase, bk.Status.FailureReason)
		}
		backups = append(backups, bk.Name)
		t.Logf("backup %s under attack: %s %s", bk.Name, bk.Status.Phase, bk.Status.FailureReason)
		if strings.Contains(bk.Status.FailureReason, "is a FIFO: not backed up") {
			reported++
		}
	}
	if reported == 0 {
		t.Errorf("no backup reported the tenant's FIFOs as not backed up")
	}

	// A restore of the first backup into the shop, still under attack.
	r, err := c.Restore(ctx, ns+"-restore", backups[0])
	must(t, err)
	must(t, c.WaitRestore(ctx, r, 5*time.Minute))
	t.Logf("restore under attack: %s %s", r.Status.Phase, r.Status.FailureReason)
	stop()
	swaps, err := c.Exec(ctx, ns, shop, "cat /tmp/swaps; cat /tmp/attack.log")
	must(t, err)
	var swapped int
	if _, err := fmt.Sscan(swaps, &swapped); err != nil || swapped < 100 {
		t.Fatalf("the attacker swapped only %q times: the race was not exercised", swaps)
	}

	// Nothing of the victim or of the agent's token in any snapshot, as the kopia CLI reads them.
	kopia, err := c.NewKopia(ctx, repotest.Tool(t, "kopia"), t.TempDir())
	must(t, err)
	token := "eyJhbGciOi" // every service-account token is a JWT: base64 of {"alg":
	leaks := 0
	for _, name := range backups {
		ids, err := c.SnapshotIDs(ctx, name)
		must(t, err)
		for _, id := range ids {
			dir := filepath.Join(t.TempDir(), id)
			_, err := kopia.run(ctx, "snapshot", "restore", id, dir, "--skip-owners", "--skip-permissions")
			must(t, err)
			leaks += grepTree(t, dir, secret, token)
		}
	}
	victimAfter, err := c.Exec(ctx, ns, web, "cd /content && "+describeScript)
	must(t, err)
	if victimAfter != victimBefore {
		t.Errorf("the other pod's volume changed during the attack:\n%s\nwas:\n%s", victimAfter, victimBefore)
	}
	t.Logf("%d backups and a restore while the tenant made %d rounds of swaps: %d leaks", rounds, swapped, leaks)
	if leaks > 0 {
		t.Fatalf("%d files in the tenant's snapshots hold the victim's secret or a token", leaks)
	}
}

// volumeOnNode is where the node-agent sees a pod's claim: /host_pods/<pod uid>/volumes/
// kubernetes.io~csi/<pv>/mount.
func (c *Cluster) volumeOnNode(ctx context.Context, ns, pod, claim string) (string, error) {
	p := &corev1.Pod{}
	if err := c.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: pod}, p); err != nil {
		return "", err
	}
	pvc := &corev1.PersistentVolumeClaim{}
	if err := c.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: claim}, pvc); err != nil {
		return "", err
	}
	return fmt.Sprintf("/host_pods/%s/volumes/kubernetes.io~csi/%s/mount", p.UID, pvc.Spec.VolumeName), nil
}

// grepTree counts the regular files below dir that contain any of needles.
func grepTree(t *testing.T, dir string, needles ...string) int {
	n := 0
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || !info.Mode().IsRegular() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, s := range needles {
			if strings.Contains(string(data), s) {
				t.Errorf("%s holds %q", strings.TrimPrefix(p, dir), s[:min(len(s), 12)])
				n++
				break
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}
