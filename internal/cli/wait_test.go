package cli

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferry-backup/ferry/api/shared"
	velerov1 "github.com/ferry-backup/ferry/api/v1"
	velerov2alpha1 "github.com/ferry-backup/ferry/api/v2alpha1"
	"github.com/ferry-backup/ferry/internal/testenv"
)

const mib = 1 << 20

// syncBuffer is what a command prints, readable while it runs.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// ferryWhile runs ferry while drive plays the server's part, reading what ferry printed so far;
// it returns ferry's output and error once both are done.
func ferryWhile(t *testing.T, drive func(ctx context.Context, printed func() string) error, args ...string) (string, error) {
	t.Helper()
	out := &syncBuffer{}
	ctx := testenv.Context(t)
	driven := make(chan error, 1)
	go func() { driven <- drive(ctx, out.String) }()
	cmd := NewCommand(out)
	cmd.SetArgs(append([]string{"--kubeconfig", testenv.Get(t).Kubeconfig}, args...))
	err := cmd.ExecuteContext(ctx)
	if derr := <-driven; derr != nil {
		t.Fatalf("driving the status: %v\nferry printed:\n%s", derr, out.String())
	}
	return out.String(), err
}

// poll waits for cond with a deadline, as the test's side of a conversation with ferry.
func poll(ctx context.Context, what string, cond func() bool) error {
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("waited in vain for %s", what)
		}
		time.Sleep(20 * time.Millisecond) // polling; cond is the synchronisation
	}
	return nil
}

var started = metav1.NewTime(time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC))

func at(seconds int) *metav1.Time {
	t := metav1.NewTime(started.Add(time.Duration(seconds) * time.Second))
	return &t
}

// setStatus writes obj's status (the status subresource) after mutate, re-reading obj first.
func setStatus(ctx context.Context, c client.Client, obj client.Object, mutate func()) error {
	if err := c.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
		return err
	}
	mutate()
	return c.Status().Update(ctx, obj)
}

func newPVB(ns, backup, name, pod, node string) *velerov1.PodVolumeBackup {
	return &velerov1.PodVolumeBackup{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{velerov1.LabelBackupName: backup}},
		Spec: velerov1.PodVolumeBackupSpec{Node: node, Pod: corev1.ObjectReference{Kind: "Pod", Namespace: "app", Name: pod},
			Volume: "data", BackupStorageLocation: "default", RepoIdentifier: "app", UploaderType: "kopia",
			Tags: map[string]string{"pvc": "data-" + pod}},
	}
}

func newDataUpload(ns, backup, name, pvc string) *velerov2alpha1.DataUpload {
	return &velerov2alpha1.DataUpload{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{velerov1.LabelBackupName: backup}},
		Spec: velerov2alpha1.DataUploadSpec{SnapshotType: velerov2alpha1.SnapshotTypeCSI,
			CSISnapshot: &velerov2alpha1.CSISnapshotSpec{VolumeSnapshot: name, StorageClass: "csi", SnapshotClass: "csi"},
			SourcePVC:   pvc, SourceNamespace: "app", BackupStorageLocation: "default", DataMover: "ferry",
			OperationTimeout: shared.Duration{Duration: time.Hour}},
	}
}

// driveBackup plays ferry-server and a node-agent for one backup with one PodVolumeBackup: half
// uploaded (until ferry has printed so), then ended as asked.
func driveBackup(c client.Client, ns, name string, volume velerov1.PodVolumePhase, final velerov1.BackupPhase) func(context.Context, func() string) error {
	return func(ctx context.Context, printed func() string) error {
		b := &velerov1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
		if err := poll(ctx, "the Backup", func() bool { return c.Get(ctx, client.ObjectKeyFromObject(b), b) == nil }); err != nil {
			return err
		}
		if err := setStatus(ctx, c, b, func() { b.Status.Phase, b.Status.StartTimestamp = velerov1.BackupPhaseInProgress, at(0) }); err != nil {
			return err
		}
		pvb := newPVB(ns, name, name+"-web-0", "web-0", "node-1")
		if err := c.Create(ctx, pvb); err != nil {
			return err
		}
		if err := setStatus(ctx, c, pvb, func() {
			pvb.Status = velerov1.PodVolumeBackupStatus{Phase: velerov1.PodVolumePhaseInProgress, StartTimestamp: at(1),
				Progress: shared.DataMoveOperationProgress{TotalBytes: 100 * mib, BytesDone: 50 * mib, TotalFiles: 10, FilesDone: 5, BytesPerSecond: 10 * mib}}
		}); err != nil {
			return err
		}
		if err := poll(ctx, "the half-way line", func() bool { return strings.Contains(printed(), "(50%)") }); err != nil {
			return err
		}
		if err := setStatus(ctx, c, pvb, func() {
			pvb.Status.Phase, pvb.Status.CompletionTimestamp = volume, at(11)
			if volume == velerov1.PodVolumePhaseCompleted {
				pvb.Status.Progress.BytesDone, pvb.Status.Progress.FilesDone, pvb.Status.SnapshotID = 100*mib, 10, "snap-1"
			} else {
				pvb.Status.Message = "read /data/x: input/output error"
			}
		}); err != nil {
			return err
		}
		return setStatus(ctx, c, b, func() { b.Status.Phase, b.Status.CompletionTimestamp = final, at(42) })
	}
}

// TestBackupWait follows backups with --wait to each end: success only when Completed.
func TestBackupWait(t *testing.T) {
	c := testenv.Get(t).Client
	ns := testenv.Namespace(t, "cli-wait")
	cases := []struct {
		name    string
		volume  velerov1.PodVolumePhase
		final   velerov1.BackupPhase
		summary string
	}{
		{"completed", velerov1.PodVolumePhaseCompleted, velerov1.BackupPhaseCompleted,
			"Backup completed Completed: 1 volumes (1 completed, 0 failed), 100.0 MiB of 100.0 MiB in 42s"},
		{"partially-failed", velerov1.PodVolumePhaseFailed, velerov1.BackupPhasePartiallyFailed,
			"Backup partially-failed PartiallyFailed: 1 volumes (0 completed, 1 failed), 50.0 MiB of 100.0 MiB in 42s"},
		{"failed", velerov1.PodVolumePhaseFailed, velerov1.BackupPhaseFailed,
			"Backup failed Failed: 1 volumes (0 completed, 1 failed), 50.0 MiB of 100.0 MiB in 42s"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := ferryWhile(t, driveBackup(c, ns, tc.name, tc.volume, tc.final), "-n", ns, "backup", "create", tc.name, "--wait")
			t.Logf("ferry printed:\n%s", out)
			for _, want := range []string{"backup " + tc.name + ": InProgress",
				"app/web-0:data (file system, node-1): uploading 50.0 MiB of 100.0 MiB (50%), 5/10 files, 10.0 MiB/s, ETA 5s",
				tc.summary} {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
			if tc.final == velerov1.BackupPhaseCompleted {
				if err != nil {
					t.Fatalf("err = %v\n%s", err, out)
				}
				if !strings.Contains(out, "completed 100.0 MiB in 10s snapshot snap-1") {
					t.Errorf("no completed line:\n%s", out)
				}
				return
			}
			if err == nil || ExitCode(err) != ExitNotCompleted || !strings.Contains(err.Error(), "backup "+tc.name+" ended "+string(tc.final)) ||
				!strings.Contains(err.Error(), "1 of 1 volumes failed") {
				t.Fatalf("err = %v (exit code %d)\n%s", err, ExitCode(err), out)
			}
			if !strings.Contains(out, "failed 50.0 MiB of 100.0 MiB (50%), 5/10 files: read /data/x: input/output error") {
				t.Errorf("no failed line with its message:\n%s", out)
			}
		})
	}
}

// TestRestoreWait follows a restore with one PodVolumeRestore to its end.
func TestRestoreWait(t *testing.T) {
	c := testenv.Get(t).Client
	ns := testenv.Namespace(t, "cli-rwait")
	mustFerry(t, "-n", ns, "backup", "create", "src")
	drive := func(ctx context.Context, printed func() string) error {
		r := &velerov1.Restore{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "r1"}}
		if err := poll(ctx, "the Restore", func() bool { return c.Get(ctx, client.ObjectKeyFromObject(r), r) == nil }); err != nil {
			return err
		}
		if err := setStatus(ctx, c, r, func() { r.Status.Phase, r.Status.StartTimestamp = velerov1.RestorePhaseInProgress, at(0) }); err != nil {
			return err
		}
		pvr := &velerov1.PodVolumeRestore{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "r1-web-0", Labels: map[string]string{velerov1.LabelRestoreName: "r1"}},
			Spec: velerov1.PodVolumeRestoreSpec{Pod: corev1.ObjectReference{Kind: "Pod", Namespace: "app-copy", Name: "web-0"}, Volume: "data",
				BackupStorageLocation: "default", RepoIdentifier: "app", UploaderType: "kopia", SnapshotID: "snap-9", SourceNamespace: "app", Node: "node-2"}}
		if err := c.Create(ctx, pvr); err != nil {
			return err
		}
		if err := setStatus(ctx, c, pvr, func() {
			pvr.Status = velerov1.PodVolumeRestoreStatus{Phase: velerov1.PodVolumePhaseInProgress, StartTimestamp: at(1),
				Progress: shared.DataMoveOperationProgress{TotalBytes: 40 * mib, BytesDone: 10 * mib, BytesPerSecond: 5 * mib}}
		}); err != nil {
			return err
		}
		if err := poll(ctx, "the restoring line", func() bool { return strings.Contains(printed(), "restoring 10.0 MiB") }); err != nil {
			return err
		}
		if err := setStatus(ctx, c, pvr, func() {
			pvr.Status.Phase, pvr.Status.CompletionTimestamp, pvr.Status.Progress.BytesDone = velerov1.PodVolumePhaseCompleted, at(9), 40*mib
		}); err != nil {
			return err
		}
		return setStatus(ctx, c, r, func() { r.Status.Phase, r.Status.CompletionTimestamp = velerov1.RestorePhaseCompleted, at(10) })
	}
	out, err := ferryWhile(t, drive, "-n", ns, "restore", "create", "r1", "--from-backup", "src", "--wait")
	if err != nil {
		t.Fatalf("err = %v\n%s", err, out)
	}
	for _, want := range []string{"app-copy/web-0:data (file system, node-2): restoring 10.0 MiB of 40.0 MiB (25%), 5.0 MiB/s, ETA 6s",
		"Restore r1 Completed: 1 volumes (1 completed, 0 failed), 40.0 MiB of 40.0 MiB in 10s"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
