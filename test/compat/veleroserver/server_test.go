package veleroserver

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/repository/repotest"
	"github.com/ferry-backup/ferry/test/harness"
)

// veleroServer is `velero server` running as a local process against the test API server.
type veleroServer struct {
	t       *testing.T
	cmd     *exec.Cmd
	exited  chan struct{}
	logPath string
	// cli runs Velero's CLI against the same API server and namespace.
	kubeconfig, namespace string
}

// startVeleroServer runs Velero's server as `velero install` configures it for file-system
// backups with Kopia: the AWS plugin, credentials from AWS_SHARED_CREDENTIALS_FILE (in the
// environment), metrics and profiler on free local ports.
func startVeleroServer(t *testing.T, c *harness.Cluster) *veleroServer {
	t.Helper()
	s := &veleroServer{t: t, logPath: filepath.Join(c.Dir, "velero-server.log"), kubeconfig: c.Env.Kubeconfig, namespace: c.Install,
		exited: make(chan struct{})}
	logFile, err := os.Create(s.logPath)
	if err != nil {
		t.Fatal(err)
	}
	s.cmd = exec.Command(filepath.Join(veleroDir, "velero"), "server",
		"--kubeconfig", c.Env.Kubeconfig, "--namespace", c.Install,
		"--plugin-dir", filepath.Join(veleroDir, "plugins"), "--uploader-type", "kopia",
		"--metrics-address", freeAddr(t), "--profiler-address", freeAddr(t),
		"--log-level", "debug")
	s.cmd.Env = append(os.Environ(), "HOME="+t.TempDir()) // no client config of the user's
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	s.cmd.Dir = c.Dir
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start velero server: %v", err)
	}
	go func() {
		_ = s.cmd.Wait()
		_ = logFile.Close()
		close(s.exited)
	}()
	t.Cleanup(func() {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(20 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
		if t.Failed() {
			log := s.log()
			t.Logf("velero server log, errors and warnings:\n%s\n(tail):\n%s", problems(log, 40), tail(log, 40))
		}
	})
	return s
}

func (s *veleroServer) log() string {
	data, err := os.ReadFile(s.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	return string(data)
}

// command returns Velero's CLI with args, against the test API server and namespace.
func (s *veleroServer) command(args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(veleroDir, "velero"), append(args, "--kubeconfig", s.kubeconfig, "--namespace", s.namespace)...)
	cmd.Env = append(os.Environ(), "HOME="+s.t.TempDir()) // no client config of the user's
	return cmd
}

// cli runs Velero's CLI and returns its output; it fails the test unless the CLI exits 0.
func (s *veleroServer) cli(args ...string) string {
	s.t.Helper()
	out, err := s.command(args...).CombinedOutput()
	if err != nil {
		s.t.Fatalf("velero %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func tail(s string, lines int) string {
	all := strings.Split(s, "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// problems returns the first n error and warning lines of a Velero log.
func problems(log string, n int) string {
	var found []string
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "level=error") || strings.Contains(line, "level=warning") {
			found = append(found, line)
		}
	}
	return strings.Join(found[:min(len(found), n)], "\n")
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Velero's own server and CLI, with Ferry's node-agent in place of Velero's: `velero backup
// create --default-volumes-to-fs-backup --wait` completes with Velero's server creating the
// namespace's BackupRepository (and the Kopia repository in <prefix>/kopia/<namespace>/) and the
// PodVolumeBackup that Ferry's agent runs; `velero restore create --wait` into a mapped namespace
// completes with Ferry's agent filling the restored pod's volume under Velero's restore-wait, byte
// for byte.
func TestVeleroServerAndCLIWithFerrysNodeAgent(t *testing.T) {
	start := time.Now()
	c := harness.New(t)
	ctx := context.Background()

	// The location as `velero install --provider aws` writes it: no spec.credential; the server
	// and the agents read AWS_SHARED_CREDENTIALS_FILE.
	loc := repotest.S3(t)
	creds := filepath.Join(t.TempDir(), "cloud")
	if err := os.WriteFile(creds, []byte(fmt.Sprintf("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n",
		loc.Credentials.AccessKeyID, loc.Credentials.SecretAccessKey)), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", creds)
	bsl := &velerov1.BackupStorageLocation{}
	if err := c.Client.Get(ctx, client.ObjectKey{Namespace: c.Install, Name: "default"}, bsl); err != nil {
		t.Fatal(err)
	}
	bsl.Spec = velerov1.BackupStorageLocationSpec{Provider: "aws", Default: true, Config: loc.Config,
		StorageType: velerov1.StorageType{ObjectStorage: &velerov1.ObjectStorageLocation{Bucket: loc.Bucket, Prefix: loc.Prefix}}}
	if err := c.Client.Update(ctx, bsl); err != nil {
		t.Fatal(err)
	}

	node := c.StartNode("node-a") // after Setenv: the agent reads the same credentials file
	ns := c.Namespace("app")
	web := c.CreatePod(node, ns, "web", harness.VolumeSpec{Name: "data", Claim: "web-data"})
	if err := harness.FillVolume(web.Dirs["data"], 24, 16<<20, 1); err != nil {
		t.Fatal(err)
	}
	c.ReportNodeAgents()

	// Velero's restore reads its own Deployment (the image of the restore-wait init container).
	if err := c.Client.Create(ctx, veleroDeployment(c.Install)); err != nil {
		t.Fatal(err)
	}
	velero := startVeleroServer(t, c)
	// The waits are generous: under `make test` other tiers run beside Velero's server, which
	// took over a minute to validate the location there (15 s alone).
	c.Eventually(5*time.Minute, func() (bool, string) {
		if err := c.Client.Get(ctx, client.ObjectKeyFromObject(bsl), bsl); err != nil {
			return false, err.Error()
		}
		return bsl.Status.Phase == velerov1.BackupStorageLocationPhaseAvailable,
			fmt.Sprintf("location default is %q (%s)", bsl.Status.Phase, bsl.Status.Message)
	})
	ready := time.Now()

	// Backup, with Velero's CLI.
	out := velero.cli("backup", "create", "nightly", "--include-namespaces", ns, "--default-volumes-to-fs-backup", "--wait")
	backedUp := time.Now()
	backup := &velerov1.Backup{}
	if err := c.Client.Get(ctx, client.ObjectKey{Namespace: c.Install, Name: "nightly"}, backup); err != nil {
		t.Fatal(err)
	}
	if backup.Status.Phase != velerov1.BackupPhaseCompleted {
		t.Fatalf("backup nightly is %s, want Completed:\n%s", backup.Status.Phase, out)
	}
	pvbs := &velerov1.PodVolumeBackupList{}
	if err := c.Client.List(ctx, pvbs, client.InNamespace(c.Install), client.MatchingLabels{velerov1.LabelBackupName: "nightly"}); err != nil {
		t.Fatal(err)
	}
	if len(pvbs.Items) != 1 {
		t.Fatalf("Velero's server created %d PodVolumeBackups, want 1", len(pvbs.Items))
	}
	pvb := pvbs.Items[0]
	if pvb.Status.Phase != velerov1.PodVolumePhaseCompleted || pvb.Spec.Node != node.Name || pvb.Status.SnapshotID == "" || pvb.Spec.Volume != "data" {
		t.Errorf("PodVolumeBackup %s: node %s, volume %s, status %+v", pvb.Name, pvb.Spec.Node, pvb.Spec.Volume, pvb.Status)
	}
	if !strings.Contains(node.Log(), pvb.Name) {
		t.Errorf("Ferry's node-agent never logged %s:\n%s", pvb.Name, node.Log())
	}
	repos := &velerov1.BackupRepositoryList{}
	if err := c.Client.List(ctx, repos, client.InNamespace(c.Install)); err != nil {
		t.Fatal(err)
	}
	if len(repos.Items) != 1 || repos.Items[0].Spec.VolumeNamespace != ns || repos.Items[0].Status.Phase != velerov1.BackupRepositoryPhaseReady {
		t.Errorf("BackupRepositories: %+v, want one Ready for %s", repos.Items, ns)
	}
	describe := velero.cli("backup", "describe", "nightly", "--details", "--colorized=false")
	for _, want := range []string{"Phase:  Completed", "Pod Volume Backups - kopia:", ns + "/web: data"} {
		if !strings.Contains(describe, want) {
			t.Errorf("velero backup describe --details lacks %q:\n%s", want, describe)
		}
	}

	// Restore into another namespace, with Velero's CLI; the harness schedules and starts the pod
	// Velero creates.
	restoredNS := ns + "-restored"
	restoreCmd := velero.command("restore", "create", "nightly-restore", "--from-backup", "nightly",
		"--namespace-mappings", ns+":"+restoredNS, "--wait")
	var restoreOut bytes.Buffer
	restoreCmd.Stdout, restoreCmd.Stderr = &restoreOut, &restoreOut
	if err := restoreCmd.Start(); err != nil {
		t.Fatal(err)
	}
	var restoreErr error
	restoreDone := make(chan struct{}) // closed: read by the test and again by its cleanup
	go func() { restoreErr = restoreCmd.Wait(); close(restoreDone) }()
	t.Cleanup(func() {
		_ = restoreCmd.Process.Kill()
		<-restoreDone
	})
	target := c.SchedulePod(node, restoredNS, "web", 4*time.Minute)
	if len(target.Spec.InitContainers) == 0 || target.Spec.InitContainers[0].Name != "restore-wait" {
		t.Fatalf("Velero restored pod web without its restore-wait init container: %+v", target.Spec.InitContainers)
	}
	restore := &velerov1.Restore{}
	if err := c.Client.Get(ctx, client.ObjectKey{Namespace: c.Install, Name: "nightly-restore"}, restore); err != nil {
		t.Fatal(err)
	}
	// What restore-wait waits for: the mark of this restore in the volume.
	mark := filepath.Join(target.Dirs["data"], ".velero", string(restore.UID))
	c.Eventually(4*time.Minute, func() (bool, string) {
		_, err := os.Stat(mark)
		return err == nil, fmt.Sprintf("restore-wait's mark: %v", err)
	})
	c.FinishInit(target)
	select {
	case <-restoreDone:
		if restoreErr != nil {
			t.Fatalf("velero restore create --wait: %v\n%s", restoreErr, restoreOut.String())
		}
	case <-time.After(4 * time.Minute):
		t.Fatalf("velero restore create --wait did not return:\n%s", restoreOut.String())
	}
	restored := time.Now()
	if err := c.Client.Get(ctx, client.ObjectKeyFromObject(restore), restore); err != nil {
		t.Fatal(err)
	}
	if restore.Status.Phase != velerov1.RestorePhaseCompleted {
		t.Fatalf("restore is %s (%d errors, %d warnings), want Completed:\n%s", restore.Status.Phase, restore.Status.Errors, restore.Status.Warnings, restoreOut.String())
	}
	pvrs := &velerov1.PodVolumeRestoreList{}
	if err := c.Client.List(ctx, pvrs, client.InNamespace(c.Install), client.MatchingLabels{velerov1.LabelRestoreName: "nightly-restore"}); err != nil {
		t.Fatal(err)
	}
	if len(pvrs.Items) != 1 || pvrs.Items[0].Status.Phase != velerov1.PodVolumePhaseCompleted || pvrs.Items[0].Spec.SnapshotID != pvb.Status.SnapshotID {
		t.Errorf("PodVolumeRestores: %+v, want one Completed from snapshot %s", pvrs.Items, pvb.Status.SnapshotID)
	}
	want, err := harness.Describe(web.Dirs["data"])
	if err != nil {
		t.Fatal(err)
	}
	got, err := harness.Describe(target.Dirs["data"], ".velero")
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("restored volume differs:\n%s\nwant\n%s", got, want)
	}
	t.Logf("Velero's server ready in %s; backup %s; restore %s; story %s",
		ready.Sub(start).Round(time.Millisecond), backedUp.Sub(ready).Round(time.Millisecond),
		restored.Sub(backedUp).Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}

// veleroDeployment is the Deployment `velero install` makes for Velero's server (which here runs
// as a local process): Velero's restores read its image for the restore-wait init container.
func veleroDeployment(namespace string) *appsv1.Deployment {
	labels := map[string]string{"component": "velero", "deploy": "velero"}
	zero := int32(0)
	return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "velero", Labels: labels},
		Spec: appsv1.DeploymentSpec{Replicas: &zero, Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "velero", Image: "velero/velero:v1.18.3",
					Command: []string{"/velero"}, Args: []string{"server"}}}}}}}
}
