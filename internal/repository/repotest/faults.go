package repotest

import (
	"testing"

	"github.com/ferry-backup/ferry/internal/repository"
	"github.com/ferry-backup/ferry/internal/repository/repotest/faults3"
)

// FaultyS3 returns a location in a new bucket of the test S3 server, reached through a
// fault-injecting proxy of its own, and the proxy. The proxy stops when the test ends.
func FaultyS3(t testing.TB) (repository.Location, *faults3.Proxy) {
	t.Helper()
	loc := S3(t)
	p := S3Proxy(t)
	loc.Config = map[string]string{"region": loc.Config["region"], "s3Url": p.URL, "s3ForcePathStyle": "true"}
	return loc, p
}

// S3Proxy starts a fault-injecting proxy in front of the test S3 server (starting the server if
// needed), for tests that hand the endpoint to another process. It stops when the test ends.
func S3Proxy(t testing.TB) *faults3.Proxy {
	t.Helper()
	p, err := faults3.Start(startServer(t).endpoint)
	if err != nil {
		t.Fatalf("repotest: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}
