// Package harness provides the simulated cluster of Ferry's cluster-level tests and of
// `make demo`: a real kube-apiserver and etcd, Ferry's real binaries as processes, and in the
// place of the kubelet, a per-node "pods directory" in which the harness lays out volume data the
// way a kubelet would (/var/lib/kubelet/pods/<uid>/volumes/<plugin>/<name>). Product code never
// knows it runs here.
package harness

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/repoaccess"
	"github.com/ferry-backup/ferry/internal/repository"
	"github.com/ferry-backup/ferry/internal/repository/repotest"
	"github.com/ferry-backup/ferry/internal/repository/repotest/faults3"
	"github.com/ferry-backup/ferry/internal/testenv"
)

// Cluster is a simulated cluster on a real API server.
type Cluster struct {
	t      testing.TB
	Env    *testenv.Env
	Client client.Client
	Dir    string
	// Install is the namespace Ferry is installed in: its own per cluster, so that clusters of
	// one test binary (and repeated runs) do not see each other's objects.
	Install string
	binDir  string
	mu      sync.Mutex
	nodes   map[string]*Node
	// jobs runs the Jobs of the install namespace, from the first StartServer on.
	jobs     *jobRunner
	jobsOnce sync.Once
}

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// moduleRoot is the repository's top directory.
func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// build compiles Ferry's programs once per test binary.
func build() (string, error) {
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "ferry-bin-")
		if buildErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", buildDir+"/", "./cmd/ferry-node-agent", "./cmd/ferry-server", "./cmd/ferry")
		cmd.Dir = moduleRoot()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	return buildDir, buildErr
}

// Stop removes the programs build compiled; give it to testenv.Run as a cleanup of every test
// binary that uses the harness.
func Stop() {
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
}

// New returns a cluster with the install namespace, the repository password Secret and a
// filesystem BackupStorageLocation named "default".
func New(t testing.TB) *Cluster {
	t.Helper()
	bin, err := build()
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	env := testenv.Get(t)
	c := &Cluster{t: t, Env: env, Client: env.Client, Dir: t.TempDir(), binDir: bin, nodes: map[string]*Node{}}
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "ferry-"}}
	if err := c.Client.Create(ctx, ns); err != nil {
		t.Fatalf("harness: namespace: %v", err)
	}
	c.Install = ns.Name
	c.SetPassword("harness-password-1")
	c.CreateFilesystemBSL("default")
	return c
}

// SetPassword creates or updates the repository password Secret.
func (c *Cluster) SetPassword(password string) {
	c.t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: c.Install, Name: repoaccess.PasswordSecret}}
	c.apply(s, func() { s.Data = map[string][]byte{repoaccess.PasswordKey: []byte(password)} })
}

// CreateFilesystemBSL creates a location in a directory of the cluster's own, and its
// repository, as ferry-server does before it asks node-agents for backups.
func (c *Cluster) CreateFilesystemBSL(name string) *velerov1.BackupStorageLocation {
	c.t.Helper()
	bsl := &velerov1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Namespace: c.Install, Name: name}}
	c.apply(bsl, func() {
		bsl.Spec = velerov1.BackupStorageLocationSpec{
			Provider:    velerov1.ProviderFilesystem,
			Config:      map[string]string{"path": filepath.Join(c.Dir, "storage")},
			StorageType: velerov1.StorageType{ObjectStorage: &velerov1.ObjectStorageLocation{Bucket: name, Prefix: "ferry"}},
		}
	})
	c.createRepository(name)
	return bsl
}

// createRepository creates the repository of a location, as ferry-server does.
func (c *Cluster) createRepository(bsl string) {
	c.t.Helper()
	access := repoaccess.New(repoaccess.Options{Client: c.Client, Namespace: c.Install, WorkDir: filepath.Join(c.Dir, "server"), Create: true})
	defer access.Close(context.Background())
	_, release, err := access.Open(context.Background(), bsl, repoaccess.ForBackup)
	if err != nil {
		c.t.Fatalf("harness: create the repository of %s: %v", bsl, err)
	}
	release()
}

// CreateS3BSL creates a location in a new bucket of the test S3 server, with its credentials
// Secret, and its repository.
func (c *Cluster) CreateS3BSL(name string) *velerov1.BackupStorageLocation {
	c.t.Helper()
	return c.createS3BSL(name, repotest.S3(c.t))
}

// CreateFaultyS3BSL is CreateS3BSL with the location reached through a fault-injecting proxy
// of its own on 127.0.0.1, which it returns: every Ferry process of the cluster goes through it.
// stallTimeout, when set, is the location's config.stallTimeout. Faults are added once the
// repository exists.
func (c *Cluster) CreateFaultyS3BSL(name, stallTimeout string) (*velerov1.BackupStorageLocation, *faults3.Proxy) {
	c.t.Helper()
	loc, proxy := repotest.FaultyS3(c.t)
	if stallTimeout != "" {
		loc.Config["stallTimeout"] = stallTimeout
	}
	return c.createS3BSL(name, loc), proxy
}

// CreateSlowS3BSL creates an S3 location whose pack uploads each take delay more, so that a
// backup stays running long enough to be watched, canceled or killed on any machine. It returns
// the location too, for the test to open the repository itself.
func (c *Cluster) CreateSlowS3BSL(name string, delay time.Duration) (*velerov1.BackupStorageLocation, repository.Location) {
	c.t.Helper()
	loc, proxy := repotest.FaultyS3(c.t)
	proxy.Add(faults3.Fault{Kind: faults3.Delay, Method: http.MethodPut, KeyPrefix: loc.Prefix + "/p", Delay: delay})
	return c.createS3BSL(name, loc), loc
}

func (c *Cluster) createS3BSL(name string, loc repository.Location) *velerov1.BackupStorageLocation {
	c.t.Helper()
	creds := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: c.Install, Name: name + "-credentials"}}
	c.apply(creds, func() {
		creds.Data = map[string][]byte{"cloud": []byte(fmt.Sprintf("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n",
			loc.Credentials.AccessKeyID, loc.Credentials.SecretAccessKey))}
	})
	bsl := &velerov1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Namespace: c.Install, Name: name}}
	c.apply(bsl, func() {
		bsl.Spec = velerov1.BackupStorageLocationSpec{
			Provider:    velerov1.ProviderAWS,
			Config:      loc.Config,
			Credential:  &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: creds.Name}, Key: "cloud"},
			StorageType: velerov1.StorageType{ObjectStorage: &velerov1.ObjectStorageLocation{Bucket: loc.Bucket, Prefix: loc.Prefix}},
		}
	})
	c.createRepository(name)
	return bsl
}

// RotatePassword re-keys the repositories of the named locations to a new password and then
// updates the Secret, in the order ferry-server does it.
func (c *Cluster) RotatePassword(newPassword string, locations ...string) {
	c.t.Helper()
	access := repoaccess.New(repoaccess.Options{Client: c.Client, Namespace: c.Install, WorkDir: filepath.Join(c.Dir, "server")})
	defer access.Close(context.Background())
	for _, name := range locations {
		rep, release, err := access.Open(context.Background(), name, repoaccess.ForBackup)
		if err != nil {
			c.t.Fatalf("harness: open %s to re-key it: %v", name, err)
		}
		err = rep.ChangePassword(context.Background(), newPassword)
		release()
		if err != nil {
			c.t.Fatalf("harness: re-key %s: %v", name, err)
		}
	}
	c.SetPassword(newPassword)
}

// apply creates obj, or updates it, after mutate.
func (c *Cluster) apply(obj client.Object, mutate func()) {
	c.t.Helper()
	ctx := context.Background()
	if err := c.Client.Get(ctx, client.ObjectKeyFromObject(obj), obj); err == nil {
		mutate()
		if err := c.Client.Update(ctx, obj); err != nil {
			c.t.Fatalf("harness: update %s: %v", obj.GetName(), err)
		}
		return
	}
	mutate()
	if err := c.Client.Create(ctx, obj); err != nil {
		c.t.Fatalf("harness: create %s: %v", obj.GetName(), err)
	}
}

// Eventually polls cond every 50ms until it returns true or timeout passes, then fails with
// the last description cond gave.
func (c *Cluster) Eventually(timeout time.Duration, cond func() (bool, string)) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		ok, desc := cond()
		if ok {
			return
		}
		last = desc
		if time.Now().After(deadline) {
			c.t.Fatalf("harness: not reached within %s: %s", timeout, last)
		}
		time.Sleep(50 * time.Millisecond) // polling the API server; the condition is the synchronisation
	}
}

func isAlreadyExists(err error) bool {
	return err != nil && (client.IgnoreAlreadyExists(err) == nil)
}
