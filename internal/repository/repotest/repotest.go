// Package repotest provides real storage for tests of Ferry's data path: a fresh directory, or a
// fresh bucket on a real S3-compatible server (versitygw) running on 127.0.0.1 for the whole test
// binary. Like httptest, it is test support next to the package it serves.
package repotest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/ferry-backup/ferry/internal/repository"
)

// Access keys of the test S3 server.
const (
	AccessKey = "ferry-test"
	SecretKey = "ferry-test-secret"
)

// Backend is one kind of storage a data-path test runs against.
type Backend struct {
	Name string
	// New returns a location nobody else uses.
	New func(t testing.TB) repository.Location
}

// Backends returns the filesystem and the S3 backend, for tests that must pass on both.
func Backends() []Backend {
	return []Backend{{Name: "filesystem", New: Filesystem}, {Name: "s3", New: S3}}
}

// Filesystem returns a location in a new temporary directory.
func Filesystem(t testing.TB) repository.Location {
	return repository.Location{
		Provider: repository.ProviderFilesystem,
		Bucket:   "backups",
		Prefix:   "ferry",
		Config:   map[string]string{"path": t.TempDir()},
	}
}

// S3 returns a location in a new bucket of the test S3 server, starting the server on first use.
func S3(t testing.TB) repository.Location {
	t.Helper()
	srv := startServer(t)
	bucket := "ferry-" + randomSuffix()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.client.MakeBucket(ctx, bucket, minio.MakeBucketOptions{Region: "us-east-1"}); err != nil {
		t.Fatalf("repotest: create bucket %s: %v", bucket, err)
	}
	return srv.location(bucket)
}

// S3ObjectLock returns a location in a new bucket with S3 Object Lock enabled, where blobs can
// be written with a retention period (Kopia's --retention-mode and --retention-period).
func S3ObjectLock(t testing.TB) repository.Location {
	t.Helper()
	srv := startServer(t)
	bucket := "ferry-lock-" + randomSuffix()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.client.MakeBucket(ctx, bucket, minio.MakeBucketOptions{Region: "us-east-1", ObjectLocking: true}); err != nil {
		t.Fatalf("repotest: create bucket %s with object lock: %v", bucket, err)
	}
	return srv.location(bucket)
}

// UnreachableS3 returns an S3 location on a local port nothing listens on.
func UnreachableS3(t testing.TB) repository.Location {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return (&server{endpoint: "http://" + addr}).location("unreachable")
}

// S3Server returns the running test server's endpoint, starting it if needed.
func S3Server(t testing.TB) (endpoint string) {
	return startServer(t).endpoint
}

type server struct {
	endpoint string
	client   *minio.Client
	cmd      *exec.Cmd
	dir      string
}

// Endpoint returns host:port of an S3 location's endpoint.
func Endpoint(loc repository.Location) string {
	return strings.TrimPrefix(loc.Config["s3Url"], "http://")
}

func (s *server) location(bucket string) repository.Location {
	return repository.Location{
		Provider:    repository.ProviderAWS,
		Bucket:      bucket,
		Prefix:      "ferry",
		Config:      map[string]string{"region": "us-east-1", "s3Url": s.endpoint, "s3ForcePathStyle": "true"},
		Credentials: repository.Credentials{AccessKeyID: AccessKey, SecretAccessKey: SecretKey},
	}
}

var (
	once    sync.Once
	running *server
	failure error
)

func startServer(t testing.TB) *server {
	t.Helper()
	once.Do(func() { running, failure = start() })
	if failure != nil {
		t.Fatalf("repotest: start S3 server: %v", failure)
	}
	return running
}

// Run runs the tests of a package that uses S3 and stops the server afterwards; call it from
// TestMain.
func Run(m *testing.M) {
	code := m.Run()
	Stop()
	os.Exit(code)
}

// Stop stops the test S3 server if it was started.
func Stop() {
	if running != nil {
		_ = running.cmd.Process.Kill()
		_ = running.cmd.Wait()
		_ = os.RemoveAll(running.dir)
	}
}

func start() (*server, error) {
	bin, err := installTool("versitygw")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "ferry-s3-")
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	_ = l.Close()
	for _, sub := range []string{"objects", "versions"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, err
		}
	}
	cmd := exec.Command(bin, "--port", addr, "--region", "us-east-1",
		"posix", "--versioning-dir", filepath.Join(dir, "versions"), filepath.Join(dir, "objects"))
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+AccessKey, "ROOT_SECRET_KEY="+SecretKey, "VGW_QUIET=true")
	logFile, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	client, err := minio.New(addr, &minio.Options{Creds: credentials.NewStaticV4(AccessKey, SecretKey, ""), Region: "us-east-1"})
	if err != nil {
		return nil, err
	}
	srv := &server{endpoint: "http://" + addr, client: client, cmd: cmd, dir: dir}
	return srv, srv.waitReady()
}

func (s *server) waitReady() error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := s.client.ListBuckets(ctx)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(s.dir, "server.log"))
			_ = s.cmd.Process.Kill()
			return fmt.Errorf("S3 server at %s not ready after 30s: %w\n%s", s.endpoint, err, log)
		}
		time.Sleep(50 * time.Millisecond) // polling a server that is starting up
	}
}

// Tool returns a pinned third-party binary (versitygw, kopia), building it once per machine
// with hack/install-tool.sh.
func Tool(t testing.TB, name string) string {
	t.Helper()
	bin, err := installTool(name)
	if err != nil {
		t.Fatalf("repotest: %v", err)
	}
	return bin
}

func installTool(name string) (string, error) {
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "..", "..", "hack", "install-tool.sh")
	cmd := exec.Command(script, name)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", script, name, err)
	}
	return strings.TrimSpace(string(out)), nil
}

func randomSuffix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Restic returns the restic program (the distribution's package, installed once per machine with
// hack/install-restic.sh): the tests create with it the repositories Velero's restic uploader
// wrote.
func Restic(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "..", "..", "hack", "install-restic.sh")
	cmd := exec.Command(script)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("repotest: %s: %v", script, err)
	}
	return strings.TrimSpace(string(out))
}
