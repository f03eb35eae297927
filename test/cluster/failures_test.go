package cluster

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/repository/repotest"
	"github.com/ferry-backup/ferry/test/harness"
)

// Bad input ends Failed with a message naming the cause, and the agent keeps serving.
func TestBadInputFailsClearlyAndTheAgentKeepsServing(t *testing.T) {
	c := harness.New(t)
	node := c.StartNode("node-a")
	ns := c.Namespace("bad")
	pod := c.CreatePod(node, ns, "app", harness.VolumeSpec{Name: "data", Claim: "app-data"})
	if err := harness.FillVolume(pod.Dirs["data"], 5, 1<<20, 3); err != nil {
		t.Fatal(err)
	}
	gone := c.CreatePod(node, ns, "gone", harness.VolumeSpec{Name: "data"})
	goneRef := gone.Pod.DeepCopy()
	if err := c.Client.Delete(context.Background(), gone.Pod, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name   string
		mutate func(*velerov1.PodVolumeBackup)
		want   string
	}{
		{"pod-gone", func(p *velerov1.PodVolumeBackup) {
			p.Spec.Pod = corev1.ObjectReference{Namespace: ns, Name: goneRef.Name, UID: goneRef.UID}
		}, "pod " + ns + "/gone: pod not found"},
		{"no-such-volume", func(p *velerov1.PodVolumeBackup) { p.Spec.Volume = "logs" }, `has no volume "logs"`},
		{"unknown-bsl", func(p *velerov1.PodVolumeBackup) { p.Spec.BackupStorageLocation = "nowhere" }, `backup storage location "nowhere" not found`},
	}
	for _, tc := range cases {
		pvb := c.BackupVolume(pod, "data", tc.name, tc.mutate)
		c.WaitPhase(pvb, velerov1.PodVolumePhaseFailed, time.Minute)
		if !strings.Contains(pvb.Status.Message, tc.want) {
			t.Errorf("%s: message %q, want it to contain %q", tc.name, pvb.Status.Message, tc.want)
		}
		if pvb.Status.CompletionTimestamp == nil {
			t.Errorf("%s: no completion timestamp", tc.name)
		}
	}

	c.SetPassword("not-the-password")
	wrong := c.BackupVolume(pod, "data", "wrong-password")
	c.WaitPhase(wrong, velerov1.PodVolumePhaseFailed, time.Minute)
	if !strings.Contains(wrong.Status.Message, "wrong repository password") {
		t.Errorf("wrong password: message %q", wrong.Status.Message)
	}
	// Events are sent by the recorder's own goroutine, after the status that ends the operation.
	c.Eventually(time.Minute, func() (bool, string) {
		events := &corev1.EventList{}
		if err := c.Client.List(context.Background(), events, client.InNamespace(c.Install),
			client.MatchingFields{"involvedObject.name": "wrong-password"}); err != nil {
			return false, err.Error()
		}
		return hasEvent(events, "Failed", "wrong repository password"), fmt.Sprintf("no Failed event for the wrong password; events: %v", events.Items)
	})

	c.SetPassword("harness-password-1")
	ok := c.BackupVolume(pod, "data", "after-failures")
	c.WaitPhase(ok, velerov1.PodVolumePhaseCompleted, time.Minute)

	restic := c.RestoreVolume(pod, "data", ok.Status.SnapshotID, "restic-restore", func(p *velerov1.PodVolumeRestore) {
		p.Spec.UploaderType = velerov1.UploaderTypeRestic
	})
	c.WaitPhase(restic, velerov1.PodVolumePhaseFailed, time.Minute)
	if !strings.Contains(restic.Status.Message, "uploaderType restic") {
		t.Errorf("restic restore: message %q", restic.Status.Message)
	}

	metrics, err := node.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`ferry_volume_operations_total{kind="PodVolumeBackup",outcome="Failed"} 4`,
		`ferry_volume_operations_total{kind="PodVolumeBackup",outcome="Completed"} 1`,
		`ferry_volume_bytes_total{kind="PodVolumeBackup"}`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func hasEvent(events *corev1.EventList, reason, text string) bool {
	for _, e := range events.Items {
		if e.Reason == reason && strings.Contains(e.Message, text) {
			return true
		}
	}
	return false
}

// A restore of a backup that no location holds fails validation naming every location it could
// not read, and why, instead of passing over them in silence.
func TestRestoreNamesTheLocationsItCouldNotRead(t *testing.T) {
	c := harness.New(t)
	loc := repotest.UnreachableS3(t)
	bsl := &velerov1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Namespace: c.Install, Name: "unreachable"},
		Spec: velerov1.BackupStorageLocationSpec{Provider: velerov1.ProviderAWS, Config: loc.Config,
			StorageType: velerov1.StorageType{ObjectStorage: &velerov1.ObjectStorageLocation{Bucket: loc.Bucket, Prefix: loc.Prefix}}}}
	if err := c.Client.Create(context.Background(), bsl); err != nil {
		t.Fatal(err)
	}
	c.StartServer()
	rs := &velerov1.Restore{ObjectMeta: metav1.ObjectMeta{Namespace: c.Install, Name: "ghost-restore"},
		Spec: velerov1.RestoreSpec{BackupName: "ghost"}}
	if err := c.Client.Create(context.Background(), rs); err != nil {
		t.Fatal(err)
	}
	waitRestore(t, c, rs, velerov1.RestorePhaseFailedValidation)
	msg := strings.Join(rs.Status.ValidationErrors, "; ")
	for _, want := range []string{"backup ghost not found", "could not read backup storage location unreachable", loc.Config["s3Url"]} {
		if !strings.Contains(msg, want) {
			t.Errorf("validation errors %q lack %q", msg, want)
		}
	}
}
