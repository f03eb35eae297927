package cli

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferry-backup/ferry/api/shared"
	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/testenv"
)

// pane is a tmux session of 120x30 on its own server, running one command in a real terminal.
type pane struct {
	t      *testing.T
	socket string
}

func startPane(t *testing.T, command string) *pane {
	t.Helper()
	tmux, err := exec.LookPath("tmux")
	if err != nil {
		t.Skip("tmux is not installed: the terminal display is not checked (apt-get install tmux)")
	}
	p := &pane{t: t, socket: fmt.Sprintf("ferry-test-%d", os.Getpid())}
	cmd := exec.Command(tmux, "-L", p.socket, "-f", "/dev/null", "new-session", "-d", "-x", "120", "-y", "30", "-s", "ferry", command)
	cmd.Env = append(os.Environ(), "TMUX=")
	if os.Getenv("TERM") == "" || os.Getenv("TERM") == "dumb" {
		cmd.Env = append(cmd.Env, "TERM=xterm-256color")
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tmux new-session: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command(tmux, "-L", p.socket, "kill-server").Run() })
	return p
}

// capture is what a person sees in the pane now.
func (p *pane) capture() string {
	out, err := exec.Command("tmux", "-L", p.socket, "capture-pane", "-p", "-t", "ferry").Output()
	if err != nil {
		return fmt.Sprintf("<capture-pane: %v>", err)
	}
	return string(out)
}

// waitFor polls the pane until it shows every one of want, and returns it.
func (p *pane) waitFor(ctx context.Context, want ...string) (string, error) {
	var screen string
	err := poll(ctx, fmt.Sprintf("%q on the screen", want), func() bool {
		screen = p.capture()
		for _, w := range want {
			if !strings.Contains(screen, w) {
				return false
			}
		}
		return true
	})
	if err != nil {
		return "", fmt.Errorf("%w; the screen:\n%s", err, screen)
	}
	return screen, nil
}

// barOf is the bar, between its brackets, on the screen's row that starts with label.
func barOf(screen, label string) string {
	for _, line := range strings.Split(screen, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), label) {
			if i, j := strings.Index(line, "["), strings.LastIndex(line, "]"); i >= 0 && j > i {
				return line[i+1 : j]
			}
		}
	}
	return ""
}

// filled is how many cells of the bar on label's row are filled.
func filled(screen, label string) int { return strings.Count(barOf(screen, label), "=") }

func buildFerry(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "ferry")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/ferry")
	cmd.Dir = filepath.Join("..", "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/ferry: %v\n%s", err, out)
	}
	return bin
}

// TestTerminalProgress runs the built ferry binary in a real terminal (tmux) and drives a backup
// of two volumes, looking at the screen as a person would: bars with bytes, rate and ETA that
// advance in place, each volume's state, then the summary and exit status 0.
func TestTerminalProgress(t *testing.T) {
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("tmux is not installed: the terminal display is not checked (apt-get install tmux)")
	}
	bin := buildFerry(t) // before the test's minute starts: linking takes a while on a loaded machine
	c, ctx := testenv.Get(t).Client, testenv.Context(t)
	ns := testenv.Namespace(t, "cli-tty")
	p := startPane(t, fmt.Sprintf("%s --kubeconfig %s -n %s backup create tb --wait; echo \"exit status $?\"; exec sleep 600",
		bin, testenv.Get(t).Kubeconfig, ns))

	b := &velerov1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "tb"}}
	if err := poll(ctx, "the Backup", func() bool { return c.Get(ctx, client.ObjectKeyFromObject(b), b) == nil }); err != nil {
		t.Fatalf("%v; the screen:\n%s", err, p.capture())
	}
	now := metav1.Now()
	if err := setStatus(ctx, c, b, func() { b.Status.Phase, b.Status.StartTimestamp = velerov1.BackupPhaseInProgress, &now }); err != nil {
		t.Fatal(err)
	}
	web, db := newPVB(ns, "tb", "tb-web", "web-0", "node-1"), newPVB(ns, "tb", "tb-db", "db-0", "node-2")
	progress := func(pvb *velerov1.PodVolumeBackup, phase velerov1.PodVolumePhase, done, total, perSecond int64) {
		t.Helper()
		if err := setStatus(ctx, c, pvb, func() {
			pvb.Status.Phase, pvb.Status.StartTimestamp = phase, &now
			pvb.Status.Progress = shared.DataMoveOperationProgress{BytesDone: done * mib, TotalBytes: total * mib, BytesPerSecond: perSecond * mib}
			if phase == velerov1.PodVolumePhaseCompleted {
				end := metav1.Now()
				pvb.Status.CompletionTimestamp = &end
			}
		}); err != nil {
			t.Fatal(err)
		}
	}
	for _, pvb := range []*velerov1.PodVolumeBackup{web, db} {
		if err := c.Create(ctx, pvb); err != nil {
			t.Fatal(err)
		}
	}
	progress(db, velerov1.PodVolumePhaseAccepted, 0, 0, 0)
	progress(web, velerov1.PodVolumePhaseInProgress, 50, 200, 25)
	screen, err := p.waitFor(ctx, "app/web-0:data", "uploading", "50.0 MiB / 200.0 MiB", "25.0 MiB/s ETA 6s",
		"app/db-0:data", "waiting", "backup tb (2 volumes)", "InProgress")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("screen, a quarter of one volume:\n%s", screen)
	quarter := filled(screen, "app/web-0:data")

	progress(web, velerov1.PodVolumePhaseInProgress, 150, 200, 25)
	progress(db, velerov1.PodVolumePhaseInProgress, 10, 100, 10)
	screen, err = p.waitFor(ctx, "150.0 MiB / 200.0 MiB", "25.0 MiB/s ETA 2s", "10.0 MiB / 100.0 MiB", "10.0 MiB/s ETA 9s",
		"160.0 MiB / 300.0 MiB", "35.0 MiB/s ETA 4s")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("screen, both volumes moving:\n%s", screen)
	if threeQuarters := filled(screen, "app/web-0:data"); quarter <= 0 || threeQuarters <= quarter {
		t.Errorf("the bar of app/web-0:data did not advance: %d then %d filled cells", quarter, threeQuarters)
	}
	if regexp.MustCompile(`[^0-9]50\.0 MiB / 200\.0 MiB`).MatchString(screen) || strings.Count(screen, "app/web-0:data") != 1 {
		t.Errorf("the bars were not redrawn in place:\n%s", screen)
	}

	// The node says the stage of the work and what it did with the bytes: the bars say it too,
	// with "~" before an estimated total; no ETA while the source is still scanned (its bar stays
	// empty: the total is not known) nor while the repository is flushed.
	yes := true
	for pvb, p := range map[*velerov1.PodVolumeBackup]shared.DataMoveOperationProgress{
		web: {BytesDone: 180 * mib, TotalBytes: 200 * mib, Estimated: &yes, Stage: shared.ProgressStageFlushing, BytesHashed: 150 * mib,
			BytesCached: 30 * mib, IncrementalBytes: 40 * mib, BytesPerSecond: 25 * mib},
		db: {BytesDone: 20 * mib, TotalBytes: 20 * mib, Stage: shared.ProgressStageScanning, BytesHashed: 20 * mib, BytesPerSecond: 10 * mib},
	} {
		if err := setStatus(ctx, c, pvb, func() { pvb.Status.Progress = p }); err != nil {
			t.Fatal(err)
		}
	}
	screen, err = p.waitFor(ctx, "flushing", "180.0 MiB / ~200.0 MiB, 40.0 MiB uploaded", "25.0 MiB/s", "scanning", "20.0 MiB / ?")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("screen, one volume flushing, one scanning:\n%s", screen)
	if regexp.MustCompile(`20\.0 MiB / \?.*ETA`).MatchString(screen) || regexp.MustCompile(`flushing.*ETA`).MatchString(screen) {
		t.Errorf("an ETA while the total is not known, or while flushing:\n%s", screen)
	}
	if b := barOf(screen, "app/db-0:data"); b == "" || strings.Contains(b, "=") {
		t.Errorf("the scanning volume's bar is not empty (%q):\n%s", b, screen)
	}

	progress(web, velerov1.PodVolumePhaseCompleted, 200, 200, 0)
	progress(db, velerov1.PodVolumePhaseCompleted, 100, 100, 0)
	end := metav1.NewTime(now.Add(12 * time.Second))
	if err := setStatus(ctx, c, b, func() { b.Status.Phase, b.Status.CompletionTimestamp = velerov1.BackupPhaseCompleted, &end }); err != nil {
		t.Fatal(err)
	}
	screen, err = p.waitFor(ctx, "Backup tb Completed: 2 volumes (2 completed, 0 failed), 300.0 MiB of 300.0 MiB in 12s", "exit status 0")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("screen at the end:\n%s", screen)
	full := func(label string) bool { b := barOf(screen, label); return b != "" && strings.Trim(b, "=") == "" }
	if strings.Count(screen, "completed") < 2 || !full("app/db-0:data") || !full("app/web-0:data") || !full("backup tb") {
		t.Errorf("the volumes' bars are not shown full and completed:\n%s", screen)
	}
}
