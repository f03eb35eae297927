package repoaccess_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/repoaccess"
	"github.com/ferry-backup/ferry/internal/repository"
	"github.com/ferry-backup/ferry/internal/repository/repotest"
	"github.com/ferry-backup/ferry/internal/testenv"
)

// gatedS3 is an S3 endpoint in front of the test server that holds every request until the
// gate opens; arrived closes at the first request.
type gatedS3 struct {
	gate, arrived chan struct{}
	open          func()
	requests      atomic.Int64
}

func newGatedS3(t *testing.T, target string) (*gatedS3, string) {
	g := &gatedS3{gate: make(chan struct{}), arrived: make(chan struct{})}
	g.open = sync.OnceFunc(func() { close(g.gate) })
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if g.requests.Add(1) == 1 {
			close(g.arrived)
		}
		select {
		case <-g.gate:
			proxy.ServeHTTP(w, r)
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	return g, srv.URL
}

// One location whose storage does not answer holds up only its own callers: another location
// opens meanwhile, a caller of the stuck one gives up when its context ends, and concurrent
// callers of the stuck one share its open once it answers.
func TestAStuckLocationDelaysNoOther(t *testing.T) {
	env := testenv.Get(t)
	ctx := testenv.Context(t)
	ns := testenv.Namespace(t, "repoaccess")
	s3 := repotest.S3(t)
	gated, endpoint := newGatedS3(t, s3.Config["s3Url"])
	objects := []client.Object{
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: repoaccess.PasswordSecret},
			StringData: map[string]string{repoaccess.PasswordKey: "flight-test-password"}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cloud-credentials"},
			StringData: map[string]string{"cloud": fmt.Sprintf("[default]\naws_access_key_id=%s\naws_secret_access_key=%s\n",
				s3.Credentials.AccessKeyID, s3.Credentials.SecretAccessKey)}},
		&velerov1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "stuck"},
			Spec: velerov1.BackupStorageLocationSpec{Provider: velerov1.ProviderAWS,
				Config:      map[string]string{"region": "us-east-1", "s3Url": endpoint, "s3ForcePathStyle": "true"},
				Credential:  &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cloud-credentials"}, Key: "cloud"},
				StorageType: velerov1.StorageType{ObjectStorage: &velerov1.ObjectStorageLocation{Bucket: s3.Bucket, Prefix: "ferry"}}}},
		&velerov1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "local"},
			Spec: velerov1.BackupStorageLocationSpec{Provider: velerov1.ProviderFilesystem, Config: map[string]string{"path": t.TempDir()},
				StorageType: velerov1.StorageType{ObjectStorage: &velerov1.ObjectStorageLocation{Bucket: "b"}}}},
	}
	for _, obj := range objects {
		if err := env.Client.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	access := repoaccess.New(repoaccess.Options{Client: env.Client, Namespace: ns, WorkDir: t.TempDir(), Create: true})
	defer access.Close(context.Background())

	type opened struct {
		rep *repository.Repository
		err error
	}
	open := func(ctx context.Context, bsl string) <-chan opened {
		out := make(chan opened, 1)
		go func() {
			rep, release, err := access.Open(ctx, bsl, repoaccess.ForBackup)
			if err == nil {
				release()
			}
			out <- opened{rep, err}
		}()
		return out
	}
	// wait fails the test when a call has not returned in time: it would have waited for the
	// stuck location.
	wait := func(what string, c <-chan opened) opened {
		t.Helper()
		select {
		case o := <-c:
			return o
		case <-time.After(30 * time.Second):
			gated.open()
			t.Fatalf("%s: still waiting after 30s while another location's open is stuck", what)
			return opened{}
		}
	}

	first := open(ctx, "stuck")
	<-gated.arrived
	if o := wait("open another location", open(ctx, "local")); o.err != nil {
		t.Fatalf("open another location: %v", o.err)
	}
	giveUp, cancel := context.WithCancel(ctx)
	impatient := open(giveUp, "stuck")
	cancel()
	if o := wait("a caller of the stuck location that gives up", impatient); !errors.Is(o.err, context.Canceled) {
		t.Fatalf("a caller that gave up got %v, want context.Canceled", o.err)
	}
	second := open(ctx, "stuck")
	gated.open()
	a, b := wait("the first open once the storage answers", first), wait("the second open", second)
	if a.err != nil || b.err != nil {
		t.Fatalf("opens once the storage answers: %v, %v", a.err, b.err)
	}
	if a.rep != b.rep {
		t.Fatal("two concurrent opens of one location opened it twice")
	}
}
