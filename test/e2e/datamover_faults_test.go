package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferry-backup/ferry/api/shared"
	velerov2alpha1 "github.com/ferry-backup/ferry/api/v2alpha1"
	"github.com/ferry-backup/ferry/internal/nodeconfig"
)

// TestDataMoverUnderFaults cancels data movements in their phases, kills the mover pod and the
// node-agent pod while an upload runs, and starts one with an image that does not exist: every
// operation ends, in seconds, with the right phase and message, and leaves nothing behind.
func TestDataMoverUnderFaults(t *testing.T) {
	c, ns := story(t, "faults")
	ctx := t.Context()
	app := c.NewApp(ns)
	app.Volumes = []AppVolume{{App: "web", Dir: "/content"}}
	t.Cleanup(app.Discard)
	must(t, app.Deploy(ctx))
	// Large enough, with one file at a time, that an upload is still running when it is hit.
	must(t, app.Fill(ctx, 100, 160, 160, 160, 160))
	_, size := func() (int64, int64) { d, err := app.Describe(ctx); must(t, err); return Count(d) }()
	must(t, c.EnsureRepository(ctx, "default"))

	n := 0
	upload := func(claim string, mutate ...func(*velerov2alpha1.DataUpload)) *velerov2alpha1.DataUpload {
		t.Helper()
		n++
		vs, err := c.SnapshotClaim(ctx, ns, claim, fmt.Sprintf("snap-%d", n))
		must(t, err)
		// As Velero's server hands over a snapshot that was taken (or failed): a VolumeSnapshot
		// deleted while the snapshot controller is still making its content can leave that
		// content behind, finalizer and all (external-snapshotter's race, not the mover's).
		_ = c.Poll(ctx, time.Minute, "VolumeSnapshot "+vs.Name+" to be taken or fail", func() (bool, string, error) {
			err := c.Client.Get(ctx, client.ObjectKeyFromObject(vs), vs)
			st := vs.Status
			return err == nil && st != nil && (st.ReadyToUse != nil && *st.ReadyToUse || st.Error != nil), "", err
		})
		du := &velerov2alpha1.DataUpload{ObjectMeta: metav1.ObjectMeta{Namespace: InstallNamespace, Name: fmt.Sprintf("%s-%d", ns, n)},
			Spec: velerov2alpha1.DataUploadSpec{
				SnapshotType: velerov2alpha1.SnapshotTypeCSI, SourcePVC: claim, SourceNamespace: ns,
				CSISnapshot: &velerov2alpha1.CSISnapshotSpec{VolumeSnapshot: vs.Name, StorageClass: c.Env["CLUSTER_STORAGE_CLASS"],
					SnapshotClass: "csi-hostpath-snapclass"},
				DataMover: velerov2alpha1.DataMoverFerry, BackupStorageLocation: "default",
				DataMoverConfig:  map[string]string{"parallelFilesUpload": "1"},
				OperationTimeout: shared.Duration{Duration: 10 * time.Minute},
			}}
		for _, m := range mutate {
			m(du)
		}
		must(t, c.Client.Create(ctx, du))
		return du
	}
	uploading := func(du *velerov2alpha1.DataUpload) {
		t.Helper()
		must(t, c.Poll(ctx, 2*time.Minute, "DataUpload "+du.Name+" to move data", func() (bool, string, error) {
			err := c.Client.Get(ctx, client.ObjectKeyFromObject(du), du)
			return err == nil && du.Status.Phase == velerov2alpha1.DataMovePhaseInProgress && du.Status.Progress.BytesDone > 0,
				fmt.Sprintf("%s, %d bytes done", du.Status.Phase, du.Status.Progress.BytesDone), err
		}))
	}
	cancel := func(du *velerov2alpha1.DataUpload) time.Duration {
		t.Helper()
		asked := time.Now()
		patch := client.MergeFrom(du.DeepCopy())
		du.Spec.Cancel = true
		must(t, c.Client.Patch(ctx, du, patch))
		must(t, c.WaitVolume(ctx, du, time.Minute))
		if du.Status.Phase != velerov2alpha1.DataMovePhaseCanceled {
			t.Errorf("DataUpload %s after cancel: %s %q", du.Name, du.Status.Phase, du.Status.Message)
		}
		return time.Since(asked)
	}
	completed := func(du *velerov2alpha1.DataUpload) {
		t.Helper()
		must(t, c.WaitVolume(ctx, du, 5*time.Minute))
		if du.Status.Phase != velerov2alpha1.DataMovePhaseCompleted || du.Status.Progress.TotalBytes < size {
			t.Fatalf("DataUpload %s: %s %q, %d of at least %d bytes", du.Name, du.Status.Phase, du.Status.Message, du.Status.Progress.TotalBytes, size)
		}
	}

	t.Run("canceled before any agent took it", func(t *testing.T) {
		du := upload("web-content")
		patch := client.MergeFrom(du.DeepCopy())
		du.Spec.Node = "no-such-node" // no agent accepts it
		must(t, c.Client.Patch(ctx, du, patch))
		t.Logf("canceled while New in %s", cancel(du).Round(100*time.Millisecond))
		must(t, c.WaitNoLeftovers(ctx, ns, 2*time.Minute))
	})

	t.Run("a snapshot that never gets ready", func(t *testing.T) {
		du := upload("no-such-claim")
		must(t, c.Poll(ctx, time.Minute, "DataUpload "+du.Name+" to wait for its snapshot or fail", func() (bool, string, error) {
			err := c.Client.Get(ctx, client.ObjectKeyFromObject(du), du)
			waiting := du.Status.Phase == velerov2alpha1.DataMovePhaseAccepted && strings.Contains(du.Status.Message, "waiting for VolumeSnapshot")
			return err == nil && (waiting || du.Status.Phase.Terminal()), string(du.Status.Phase) + " " + du.Status.Message, err
		}))
		if du.Status.Phase.Terminal() {
			// The snapshot controller reported why it cannot take it: the upload fails with that.
			if du.Status.Phase != velerov2alpha1.DataMovePhaseFailed || !strings.Contains(du.Status.Message, "VolumeSnapshot") {
				t.Fatalf("DataUpload %s: %s %q, want Failed naming the VolumeSnapshot", du.Name, du.Status.Phase, du.Status.Message)
			}
			t.Logf("snapshot of a missing claim: %s", du.Status.Message)
		} else {
			waiting := du.Status.Message
			t.Logf("canceled while Accepted (%q) in %s", waiting, cancel(du).Round(100*time.Millisecond))
		}
		must(t, c.WaitNoLeftovers(ctx, ns, 2*time.Minute))
	})

	t.Run("canceled while it uploads", func(t *testing.T) {
		du := upload("web-content")
		uploading(du)
		at := du.Status.Progress.BytesDone
		t.Logf("canceled while InProgress at %d of %d bytes in %s", at, du.Status.Progress.TotalBytes, cancel(du).Round(100*time.Millisecond))
		must(t, c.WaitNoLeftovers(ctx, ns, 2*time.Minute))
	})

	t.Run("canceled while its mover pod waits for a slot", func(t *testing.T) {
		// New content for the big files, so that the upload holding the slot has data to read
		// and upload whatever an earlier canceled upload left in its checkpoint.
		must(t, app.Fill(ctx, 0, 160, 160, 160, 160))
		running := upload("web-content")
		uploading(running)
		// Hold the node's one slot: the running mover is stopped (SIGSTOP, from the host, where
		// this tier runs as root) until the other was seen waiting, so neither's speed decides.
		// (An earlier canceled upload can leave a checkpoint of every file, from which the next
		// upload of the same data completes in milliseconds, slot and all.)
		mover := "data-upload=" + running.Name + " "
		signal := func(sig string) error {
			out, err := exec.CommandContext(context.WithoutCancel(ctx), "pkill", "-"+sig, "-f", mover).CombinedOutput()
			if err != nil {
				return fmt.Errorf("pkill -%s -f %q: %v %s", sig, mover, err, out)
			}
			return nil
		}
		must(t, signal("STOP"))
		t.Cleanup(func() { _ = signal("CONT") })
		waiting := upload("web-content") // the node's one slot is taken: its mover pod runs and waits
		must(t, c.Poll(ctx, 2*time.Minute, "DataUpload "+waiting.Name+" to wait for a slot", func() (bool, string, error) {
			err := c.Client.Get(ctx, client.ObjectKeyFromObject(waiting), waiting)
			return err == nil && waiting.Status.Phase == velerov2alpha1.DataMovePhasePrepared && strings.Contains(waiting.Status.Message, "slots"),
				string(waiting.Status.Phase) + " " + waiting.Status.Message, err
		}))
		said := waiting.Status.Message // cancel updates waiting
		t.Logf("canceled while Prepared (%q) in %s", said, cancel(waiting).Round(100*time.Millisecond))
		// Canceled while still stopped, so that it cannot finish first: its pod's deletion ends
		// the stopped process (SIGKILL after the grace period).
		t.Logf("the stopped upload canceled in %s", cancel(running).Round(100*time.Millisecond))
		must(t, c.WaitNoLeftovers(ctx, ns, 2*time.Minute))
	})

	t.Run("the mover pod is deleted while it uploads", func(t *testing.T) {
		must(t, app.Fill(ctx, 0, 160, 160, 160, 160)) // new data to upload (as above)
		du := upload("web-content")
		uploading(du)
		at := du.Status.Progress.BytesDone
		_, err := c.Kubectl(ctx, "", "delete", "pod", "-n", InstallNamespace, du.Name, "--wait=false")
		must(t, err)
		completed(du)
		events, err := c.MoverEvents(ctx, du)
		must(t, err)
		starts := strings.Count(strings.Join(events, "\n"), "Started: ")
		if starts < 2 {
			t.Errorf("the mover started %d times, want a second pod after the deletion:\n%s", starts, strings.Join(events, "\n"))
		}
		t.Logf("mover pod deleted at %d bytes; a new pod completed: %d bytes, %d uploaded by the new pod (%s)", at,
			du.Status.Progress.TotalBytes, du.Status.Progress.IncrementalBytes, du.Status.Message)
		must(t, c.WaitNoLeftovers(ctx, ns, 2*time.Minute))
	})

	t.Run("the node-agent pod is deleted while an upload runs", func(t *testing.T) {
		du := upload("web-content")
		uploading(du)
		agents := &corev1.PodList{}
		must(t, c.Client.List(ctx, agents, client.InNamespace(InstallNamespace), client.MatchingLabels{"name": "node-agent"}))
		if len(agents.Items) != 1 {
			t.Fatalf("%d node-agent pods", len(agents.Items))
		}
		_, err := c.Kubectl(ctx, "", "delete", "pod", "-n", InstallNamespace, agents.Items[0].Name, "--wait=false")
		must(t, err)
		completed(du)
		t.Logf("node-agent deleted during the upload; completed by the mover, recorded by the new agent: %s", du.Status.Message)
		must(t, c.WaitFerryReady(ctx, 2*time.Minute))
		must(t, c.WaitNoLeftovers(ctx, ns, 2*time.Minute))
	})

	t.Run("the mover image does not exist", func(t *testing.T) {
		setMoverImage := func(image string) {
			t.Helper()
			ds := &appsv1.DaemonSet{}
			must(t, c.Client.Get(ctx, client.ObjectKey{Namespace: InstallNamespace, Name: "node-agent"}, ds))
			patch := client.MergeFrom(ds.DeepCopy())
			env := ds.Spec.Template.Spec.Containers[0].Env
			for i := range env {
				if env[i].Name == "FERRY_IMAGE" {
					env[i].Value = image
				}
			}
			must(t, c.Client.Patch(ctx, ds, patch))
			must(t, c.WaitFerryReady(ctx, 2*time.Minute))
		}
		setMoverImage("registry.local/ferry/no-such-image:0")
		t.Cleanup(func() { setMoverImage(c.Image) })
		du := upload("web-content")
		started := time.Now()
		must(t, c.WaitVolume(ctx, du, 3*time.Minute))
		if du.Status.Phase != velerov2alpha1.DataMovePhaseFailed || !strings.Contains(du.Status.Message, "cannot start") {
			t.Fatalf("DataUpload %s with a missing image: %s %q, want Failed naming why the pod cannot start", du.Name, du.Status.Phase, du.Status.Message)
		}
		t.Logf("missing image: Failed in %s: %s", time.Since(started).Round(100*time.Millisecond), du.Status.Message)
		must(t, c.WaitNoLeftovers(ctx, ns, 2*time.Minute))
	})

	// Mover pod trouble ends Failed promptly, naming the cause; nothing is left behind.
	failsWith := func(t *testing.T, du *velerov2alpha1.DataUpload, within time.Duration, want string) {
		t.Helper()
		started := time.Now()
		must(t, c.WaitVolume(ctx, du, within))
		if du.Status.Phase != velerov2alpha1.DataMovePhaseFailed || !strings.Contains(du.Status.Message, want) {
			t.Fatalf("DataUpload %s: %s %q, want Failed naming %q", du.Name, du.Status.Phase, du.Status.Message, want)
		}
		t.Logf("Failed in %s: %s", time.Since(started).Round(100*time.Millisecond), du.Status.Message)
		must(t, c.WaitNoLeftovers(ctx, ns, 2*time.Minute))
	}
	t.Run("the mover runs out of memory", func(t *testing.T) {
		c.SetNodeAgentConfig(t, nodeconfig.KeyPodResources, `{"memoryRequest":"16Mi","memoryLimit":"16Mi"}`, "limits.memory=16Mi")
		failsWith(t, upload("web-content"), 3*time.Minute, "OOMKilled")
	})
	t.Run("the mover pod cannot be scheduled", func(t *testing.T) {
		c.SetNodeAgentConfig(t, nodeconfig.KeyPodResources, `{"cpuRequest":"500"}`, "requests.cpu=500")
		failsWith(t, upload("web-content"), 3*time.Minute, "cannot be scheduled")
	})
	t.Run("its claim is never bound", func(t *testing.T) {
		class := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: ns + "-unprovisioned"}, Provisioner: "unprovisioned.ferry.invalid"}
		must(t, c.Client.Create(ctx, class))
		t.Cleanup(func() { _ = c.Client.Delete(context.WithoutCancel(ctx), class) })
		du := upload("web-content", func(du *velerov2alpha1.DataUpload) { du.Spec.CSISnapshot.StorageClass = class.Name })
		failsWith(t, du, 3*time.Minute, "is Pending (storage class "+class.Name+")")
	})
}
