// Package e2e is Ferry's end-to-end tier: stories on a real single-node Kubernetes (kubelet,
// containerd and runc, a CNI bridge, a CSI driver with VolumeSnapshots) that
// hack/cluster/up.sh starts on this machine, with Ferry installed by its own `ferry install`
// from an image imported into the node's containerd. `make test-e2e` (part of `make test` when
// root) brings the cluster up once, runs the stories (one namespace each) and takes it down;
// `make demo` runs TestDemo on it.
//
// Every step goes through the API server, kubectl or a pod, as a user would: the tests never
// touch the node's files or Ferry's processes directly.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/scheme"
)

// InstallNamespace is where Ferry is installed, as Velero's default.
const InstallNamespace = "velero"

// LocationName is the BackupStorageLocation the stories back up to: a bucket of the cluster's
// S3 server, which listens on the node address so that every pod reaches it.
const LocationName = "default"

// Bucket is the location's bucket.
const Bucket = "ferry-e2e"

// Cluster is the running real cluster, as described by the env file up.sh writes.
type Cluster struct {
	Env        map[string]string
	Kubeconfig string
	Client     client.Client
	Node       string
	// Image is Ferry's image, imported into the node's containerd.
	Image  string
	binDir string
}

// Connect reads the env file of a cluster started by hack/cluster/up.sh and connects to it.
func Connect(envFile, image string) (*Cluster, error) {
	env, err := readEnv(envFile)
	if err != nil {
		return nil, err
	}
	for _, k := range []string{"KUBECONFIG", "KUBECTL", "CLUSTER_NODE", "CLUSTER_S3_URL", "CLUSTER_S3_ACCESS_KEY", "CLUSTER_S3_SECRET_KEY", "CLUSTER_TOOLS_IMAGE"} {
		if env[k] == "" {
			return nil, fmt.Errorf("%s: %s is not set", envFile, k)
		}
	}
	if image == "" {
		return nil, fmt.Errorf("no Ferry image given (hack/cluster/image.sh prints it)")
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", env["KUBECONFIG"])
	if err != nil {
		return nil, err
	}
	s := scheme.New()
	utilruntime.Must(apiextensionsv1.AddToScheme(s)) // stories read and change the CRDs
	c, err := client.New(cfg, client.Options{Scheme: s})
	if err != nil {
		return nil, err
	}
	return &Cluster{Env: env, Kubeconfig: env["KUBECONFIG"], Client: c, Node: env["CLUSTER_NODE"], Image: image}, nil
}

func readEnv(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("the cluster's env file: %w (is the cluster up? hack/cluster/up.sh)", err)
	}
	defer f.Close()
	env := map[string]string{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		if k, v, ok := strings.Cut(s.Text(), "="); ok {
			env[k] = v
		}
	}
	return env, s.Err()
}

// Kubectl runs the cluster's kubectl with stdin and returns what it printed; the error carries
// the output.
func (c *Cluster) Kubectl(ctx context.Context, stdin string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, c.Env["KUBECTL"], append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("kubectl %s: %w\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String(), nil
}

// Exec runs a shell script in a pod's first container (--quiet: kubectl's note naming the
// container, printed when the pod has init containers, is not the script's output).
func (c *Cluster) Exec(ctx context.Context, ns, pod, script string) (string, error) {
	return c.Kubectl(ctx, "", "exec", "--quiet", "-n", ns, pod, "--", "sh", "-c", script)
}

// moduleRoot is the repository's top directory.
func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Ferry runs the ferry CLI, built from this checkout, against the cluster.
func (c *Cluster) Ferry(ctx context.Context, args ...string) (string, error) {
	if c.binDir == "" {
		dir, err := os.MkdirTemp("", "ferry-e2e-bin-")
		if err != nil {
			return "", err
		}
		build := exec.CommandContext(ctx, "go", "build", "-o", dir+"/", "./cmd/ferry")
		build.Dir = moduleRoot()
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			return "", fmt.Errorf("go build ./cmd/ferry: %w\n%s", err, out)
		}
		c.binDir = dir
	}
	cmd := exec.CommandContext(ctx, filepath.Join(c.binDir, "ferry"), append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ferry %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// FerryFollow runs the ferry CLI with its output going to this process's standard output as it
// comes (the demo shows `--wait`'s progress as a user sees it without a terminal).
func (c *Cluster) FerryFollow(ctx context.Context, args ...string) error {
	if _, err := c.Ferry(ctx, "version"); err != nil { // builds it once
		return err
	}
	cmd := exec.CommandContext(ctx, filepath.Join(c.binDir, "ferry"), append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("ferry %s: %w", strings.Join(args, " "), err)
	}
	return nil
}

// Close removes what Connect and Ferry left on this machine.
func (c *Cluster) Close() {
	if c.binDir != "" {
		_ = os.RemoveAll(c.binDir)
	}
}

// Install installs Ferry as a user does: `ferry install` with the imported image (never pulled),
// the S3 credentials in a Secret, a bucket and a BackupStorageLocation; it returns once
// ferry-server and the node-agent DaemonSet are Ready and the location is Available.
func (c *Cluster) Install(ctx context.Context, logf func(string, ...any)) error {
	out, err := c.Ferry(ctx, "install", "--image", c.Image, "--image-pull-policy", "Never")
	if err != nil {
		return err
	}
	logf("ferry install:\n%s", indent(out))
	if err := c.makeBucket(ctx, Bucket); err != nil {
		return err
	}
	creds := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: InstallNamespace, Name: "cloud-credentials"},
		StringData: map[string]string{"cloud": fmt.Sprintf("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n",
			c.Env["CLUSTER_S3_ACCESS_KEY"], c.Env["CLUSTER_S3_SECRET_KEY"])}}
	bsl := &velerov1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Namespace: InstallNamespace, Name: LocationName},
		Spec: velerov1.BackupStorageLocationSpec{
			Provider: velerov1.ProviderAWS,
			Default:  true,
			Config: map[string]string{"region": c.Env["CLUSTER_S3_REGION"], "s3Url": c.Env["CLUSTER_S3_URL"],
				"s3ForcePathStyle": "true"},
			Credential:  &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: creds.Name}, Key: "cloud"},
			StorageType: velerov1.StorageType{ObjectStorage: &velerov1.ObjectStorageLocation{Bucket: Bucket, Prefix: "ferry"}},
		}}
	for _, obj := range []client.Object{creds, bsl} {
		if err := c.Client.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create %s: %w", obj.GetName(), err)
		}
	}
	if err := c.WaitFerryReady(ctx, 3*time.Minute); err != nil {
		return err
	}
	return c.Poll(ctx, time.Minute, "BackupStorageLocation "+LocationName+" Available", func() (bool, string, error) {
		if err := c.Client.Get(ctx, client.ObjectKeyFromObject(bsl), bsl); err != nil {
			return false, "", err
		}
		return bsl.Status.Phase == velerov1.BackupStorageLocationPhaseAvailable, fmt.Sprintf("phase %q: %s", bsl.Status.Phase, bsl.Status.Message), nil
	})
}

// s3 returns a client of the cluster's S3 server, with the keys up.sh made.
func (c *Cluster) s3() (*minio.Client, error) {
	return minio.New(strings.TrimPrefix(c.Env["CLUSTER_S3_URL"], "http://"), &minio.Options{Region: c.Env["CLUSTER_S3_REGION"],
		Creds: credentials.NewStaticV4(c.Env["CLUSTER_S3_ACCESS_KEY"], c.Env["CLUSTER_S3_SECRET_KEY"], "")})
}

func (c *Cluster) makeBucket(ctx context.Context, bucket string) error {
	mc, err := c.s3()
	if err != nil {
		return err
	}
	if ok, err := mc.BucketExists(ctx, bucket); err != nil || ok {
		return err
	}
	return mc.MakeBucket(ctx, bucket, minio.MakeBucketOptions{Region: c.Env["CLUSTER_S3_REGION"]})
}

// WaitFerryReady waits until ferry-server's Deployment and the node-agent DaemonSet have every
// pod Ready with their current spec.
func (c *Cluster) WaitFerryReady(ctx context.Context, timeout time.Duration) error {
	deploy := &appsv1.Deployment{}
	ds := &appsv1.DaemonSet{}
	return c.Poll(ctx, timeout, "ferry-server and the node-agent Ready", func() (bool, string, error) {
		if err := c.Client.Get(ctx, client.ObjectKey{Namespace: InstallNamespace, Name: "ferry-server"}, deploy); err != nil {
			return false, "", err
		}
		if err := c.Client.Get(ctx, client.ObjectKey{Namespace: InstallNamespace, Name: "node-agent"}, ds); err != nil {
			return false, "", err
		}
		s := deploy.Status
		serverReady := s.ObservedGeneration == deploy.Generation && s.UpdatedReplicas == 1 && s.ReadyReplicas == 1 && s.Replicas == 1
		d := ds.Status
		agentReady := d.ObservedGeneration == ds.Generation && d.DesiredNumberScheduled > 0 &&
			d.NumberReady == d.DesiredNumberScheduled && d.UpdatedNumberScheduled == d.DesiredNumberScheduled
		return serverReady && agentReady, fmt.Sprintf("server ready %d/1, node-agent ready %d/%d", s.ReadyReplicas, d.NumberReady, d.DesiredNumberScheduled), nil
	})
}

// Poll calls cond every 200 ms until it is true, returns an error or the time is up; the error
// then tells what was awaited and the last state cond described.
func (c *Cluster) Poll(ctx context.Context, timeout time.Duration, what string, cond func() (bool, string, error)) error {
	var last string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		ok, state, err := cond()
		last = state
		return ok, err
	})
	if err != nil {
		return fmt.Errorf("waiting %s for %s: %w (last: %s)", timeout, what, err, last)
	}
	return nil
}

// Diagnose returns what helps most when a story fails: Ferry's pods, objects, events and logs.
func (c *Cluster) Diagnose(ctx context.Context, ns string) string {
	var b strings.Builder
	for _, args := range [][]string{
		{"get", "pods", "-A", "-o", "wide"},
		{"get", "backups,restores,podvolumebackups,podvolumerestores,datauploads,datadownloads,backupstoragelocations,backuprepositories", "-n", InstallNamespace, "-o", "wide"},
		{"get", "events", "-n", InstallNamespace, "--sort-by=.lastTimestamp"},
		{"get", "events", "-n", ns, "--sort-by=.lastTimestamp"},
		{"get", "pvc,volumesnapshots", "-n", InstallNamespace, "-o", "wide"},
		{"get", "volumesnapshotcontents,pv", "-o", "wide"},
		{"logs", "-n", InstallNamespace, "deploy/ferry-server", "--tail=60"},
		{"logs", "-n", InstallNamespace, "-l", "name=node-agent", "--tail=60"},
	} {
		out, _ := c.Kubectl(ctx, "", args...)
		fmt.Fprintf(&b, "$ kubectl %s\n%s\n", strings.Join(args, " "), indent(out))
	}
	return b.String()
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ")
}
