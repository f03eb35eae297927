package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
)

// The node-agent pod is deleted while it backs up a volume; the DaemonSet recreates it, the new
// pod resumes, and the backup completes and restores byte for byte.
func TestBackupSurvivesTheNodeAgentPodDeleted(t *testing.T) {
	backupThroughPodDeletion(t, "agent-gone", "name=node-agent")
}

// The ferry-server pod is deleted while a backup runs; the Deployment's new pod takes the backup
// over and it completes.
func TestBackupSurvivesTheServerPodDeleted(t *testing.T) {
	backupThroughPodDeletion(t, "server-gone", "app.kubernetes.io/name=ferry-server")
}

func backupThroughPodDeletion(t *testing.T, prefix, victim string) {
	c, ns := story(t, prefix)
	ctx := t.Context()
	app := c.NewApp(ns)
	app.Volumes = []AppVolume{{App: "shop", Dir: "/data"}}
	t.Cleanup(app.Discard)
	must(t, app.Deploy(ctx))
	// Large enough, with one file at a time, that the backup is still running when the pod goes.
	must(t, app.Fill(ctx, 100, 160, 160, 160, 160))
	want, err := app.Describe(ctx)
	must(t, err)

	b, err := c.Backup(ctx, ns, func(b *velerov1.Backup) {
		b.Spec.UploaderConfig = &velerov1.UploaderConfigForBackup{ParallelFilesUpload: 1}
	}, ns)
	must(t, err)
	var running *velerov1.PodVolumeBackup
	must(t, c.Poll(ctx, 2*time.Minute, "the /data PodVolumeBackup to move data", func() (bool, string, error) {
		pvbs, err := c.PodVolumeBackups(ctx, b.Name)
		if err != nil {
			return false, "", err
		}
		for i, p := range pvbs {
			if p.Spec.Volume == "data" {
				running = &pvbs[i]
				return p.Status.Phase == velerov1.PodVolumePhaseInProgress && p.Status.Progress.BytesDone > 0,
					fmt.Sprintf("phase %q, %d bytes done", p.Status.Phase, p.Status.Progress.BytesDone), nil
			}
		}
		return false, fmt.Sprintf("%d PodVolumeBackups", len(pvbs)), nil
	}))
	old := &corev1.PodList{}
	must(t, c.Client.List(ctx, old, client.InNamespace(InstallNamespace), labels(victim)))
	if len(old.Items) != 1 {
		t.Fatalf("%d pods match %s, want 1", len(old.Items), victim)
	}
	_, err = c.Kubectl(ctx, "", "delete", "pod", "-n", InstallNamespace, old.Items[0].Name, "--wait=false")
	must(t, err)
	must(t, c.Client.Get(ctx, client.ObjectKeyFromObject(running), running))
	if running.Status.Phase != velerov1.PodVolumePhaseInProgress {
		t.Fatalf("the PodVolumeBackup was %s when the pod was deleted: the story needs a larger volume", running.Status.Phase)
	}
	t.Logf("deleted pod %s at %d of %d bytes", old.Items[0].Name, running.Status.Progress.BytesDone, running.Status.Progress.TotalBytes)
	deletedAt := time.Now()

	must(t, c.WaitBackup(ctx, b, 6*time.Minute))
	took := time.Since(deletedAt)
	t.Logf("backup %s %s %s after the pod was deleted", b.Name, b.Status.Phase, took.Round(100*time.Millisecond))
	if took > time.Minute { // seen once (3m52s; otherwise 7-9 s): keep the evidence
		t.Logf("slow takeover; diagnostics:\n%s", c.Diagnose(ctx, ns))
	}
	if b.Status.Phase != velerov1.BackupPhaseCompleted {
		t.Fatalf("backup %s: %s: %s", b.Name, b.Status.Phase, b.Status.FailureReason)
	}
	must(t, c.WaitFerryReady(ctx, 2*time.Minute))
	now := &corev1.PodList{}
	must(t, c.Client.List(ctx, now, client.InNamespace(InstallNamespace), labels(victim)))
	for _, p := range now.Items {
		if p.UID == old.Items[0].UID {
			t.Fatalf("pod %s is still there", p.Name)
		}
	}

	// The snapshot taken across the restart is whole: wipe the volume and restore it.
	pod, err := app.Pod(ctx, "shop")
	must(t, err)
	_, err = c.Exec(ctx, ns, pod, "rm -rf /data/* /data/.[!.]* && sync")
	must(t, err)
	r, err := c.Restore(ctx, ns+"-restore", b.Name)
	must(t, err)
	must(t, c.WaitRestore(ctx, r, 5*time.Minute))
	if r.Status.Phase != velerov1.RestorePhaseCompleted {
		t.Fatalf("restore %s: %s: %s", r.Name, r.Status.Phase, r.Status.FailureReason)
	}
	got, err := app.Describe(ctx)
	must(t, err)
	if diff := Compare(want, got); diff != "" {
		t.Fatalf("restored volume differs from the backed-up one:\n%s", diff)
	}
}

func labels(selector string) client.MatchingLabels {
	k, v, _ := strings.Cut(selector, "=")
	return client.MatchingLabels{k: v}
}
