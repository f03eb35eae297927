package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/repository/repotest"
	"github.com/ferry-backup/ferry/internal/uploader"
)

// TestVelerosRepositoryLayoutOnTheRealCluster takes over a namespace Velero has been backing up:
// its repository at <prefix>/kopia/<namespace>/ of the location, created with Kopia's defaults
// and Velero's identity default@default (here by the kopia CLI on the machine, with the
// install's password), a snapshot of the web pod's claim under Velero's source path, and the
// BackupRepository Velero's server records the repository with. Then, on the real cluster:
//   - a PodVolumeRestore made as Velero's server makes it (generateName, empty repoIdentifier)
//     restores Velero's snapshot into the pod, every file checked by its SHA-256 in the pod;
//   - a Backup through ferry-server writes into that namespace repository, not the location's
//     own, as Velero's agent would (source, identity, tags), starting from Velero's snapshot:
//     the web volume's unchanged files are not uploaded again;
//   - the kopia CLI as default@default, as Velero's agent reads, restores Ferry's snapshot.
func TestVelerosRepositoryLayoutOnTheRealCluster(t *testing.T) {
	c, ns := story(t, "velero-layout")
	ctx := t.Context()
	app := c.NewApp(ns)
	app.Volumes = []AppVolume{{App: "web", Dir: "/content"}}
	t.Cleanup(app.Discard)
	must(t, app.Deploy(ctx))
	web, err := app.Pod(ctx, "web")
	must(t, err)

	src, want := localTree(t, 60, 3, "<p>page %d</p>\n", 2000)
	kopia, err := c.NewVeleroKopia(ctx, repotest.Tool(t, "kopia"), t.TempDir(), ns)
	must(t, err)
	source := uploader.VeleroSource(uploader.VeleroPodVolumeRequester, ns+"/"+web+"/web-content")
	velero, err := kopia.SnapshotDir(ctx, src, "default@default:"+source)
	must(t, err)
	br := &velerov1.BackupRepository{ObjectMeta: metav1.ObjectMeta{Namespace: InstallNamespace, Name: ns + "-" + LocationName + "-kopia",
		Labels: map[string]string{"velero.io/volume-namespace": ns, velerov1.LabelStorageLocation: LocationName, "velero.io/repository-type": "kopia"}},
		Spec: velerov1.BackupRepositorySpec{VolumeNamespace: ns, BackupStorageLocation: LocationName, RepositoryType: velerov1.RepositoryTypeKopia}}
	must(t, c.Client.Create(ctx, br))
	t.Cleanup(func() { _ = c.Client.Delete(context.WithoutCancel(ctx), br) })

	pvr := &velerov1.PodVolumeRestore{ObjectMeta: metav1.ObjectMeta{Namespace: InstallNamespace, GenerateName: "velero-",
		Labels: map[string]string{velerov1.LabelRestoreName: "velero"}},
		Spec: velerov1.PodVolumeRestoreSpec{Pod: corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: web},
			Volume: "content", BackupStorageLocation: LocationName, UploaderType: velerov1.UploaderTypeKopia, SnapshotID: velero, SourceNamespace: ns}}
	must(t, c.Client.Create(ctx, pvr))
	must(t, c.WaitVolume(ctx, pvr, 3*time.Minute))
	if pvr.Status.Phase != velerov1.PodVolumePhaseCompleted {
		t.Fatalf("restore of Velero's snapshot %s: %s %q", velero, pvr.Status.Phase, pvr.Status.Message)
	}
	const list = "cd /content && find . -path ./.velero -prune -o -type f -print | sort | xargs sha256sum"
	out, err := c.Exec(ctx, ns, web, list)
	must(t, err)
	if got := strings.TrimSpace(out); got != want {
		t.Fatalf("the volume after restoring Velero's snapshot:\n%s\nwant:\n%s", got, want)
	}

	b, err := c.Backup(ctx, ns, nil, ns)
	must(t, err)
	must(t, c.WaitBackup(ctx, b, 5*time.Minute))
	if b.Status.Phase != velerov1.BackupPhaseCompleted {
		t.Fatalf("backup %s: %s: %s", b.Name, b.Status.Phase, b.Status.FailureReason)
	}
	pvbs, err := c.PodVolumeBackups(ctx, b.Name)
	must(t, err)
	var pvb *velerov1.PodVolumeBackup
	for i := range pvbs {
		if pvbs[i].Spec.Pod.Name == web && pvbs[i].Spec.Volume == "content" {
			pvb = &pvbs[i]
		}
	}
	if pvb == nil {
		t.Fatalf("backup %s has no PodVolumeBackup of %s/%s volume content: %d others", b.Name, ns, web, len(pvbs))
	}
	total, up := pvb.Status.Progress.TotalBytes, pvb.Status.IncrementalBytes
	if total < 1<<20 || up > 64<<10 {
		t.Errorf("Ferry's first backup after Velero's uploaded %d of %d bytes; it should start from Velero's snapshot %s", up, total, velero)
	}
	listed, err := kopia.List(ctx)
	must(t, err)
	var ferry *KopiaSnapshot
	for i := range listed {
		if listed[i].ID == pvb.Status.SnapshotID {
			ferry = &listed[i]
		}
	}
	if ferry == nil {
		t.Fatalf("the kopia CLI as default@default does not list Ferry's snapshot %s in the namespace's repository (%d snapshots)",
			pvb.Status.SnapshotID, len(listed))
	}
	if s := ferry.Source; s.Host != "default" || s.UserName != "default" || s.Path != source ||
		ferry.Tags[uploader.VeleroRequesterTag] != uploader.VeleroPodVolumeRequester || ferry.Tags[uploader.VeleroUploaderTag] != "kopia" ||
		ferry.Tags["backup"] != b.Name {
		t.Errorf("Ferry's snapshot %s: source %+v, tags %v; want default@default:%s with Velero's tags", ferry.ID, ferry.Source, ferry.Tags, source)
	}
	restored := filepath.Join(t.TempDir(), "by-kopia")
	must(t, kopia.Restore(ctx, ferry.ID, restored))
	must(t, os.RemoveAll(filepath.Join(restored, ".velero")))
	if got := sums(t, restored); got != want {
		t.Errorf("the kopia CLI restores Ferry's snapshot differently:\n%s\nwant:\n%s", got, want)
	}
	t.Logf("Velero's snapshot %s restored by the node-agent (%d bytes); Ferry's backup %s into kopia/%s uploaded %d of %d bytes of the volume; "+
		"the kopia CLI as default@default restored Ferry's snapshot %s", velero[:8], pvr.Status.Progress.BytesDone, b.Name, ns, up, total, ferry.ID[:8])
}
