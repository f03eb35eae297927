package uploader_test

import (
	"context"
	"testing"
	"time"

	"github.com/ferry-backup/ferry/internal/repository"
	"github.com/ferry-backup/ferry/internal/repository/repotest"
)

func TestMain(m *testing.M) { repotest.Run(m) }

// openRepo opens (creating) the repository at loc as a separate client with its own caches,
// the way a separate process would.
func openRepo(t testing.TB, loc repository.Location, password string) *repository.Repository {
	t.Helper()
	return openRepoWith(t, loc, password)
}

func openRepoWith(t testing.TB, loc repository.Location, password string, mutate ...func(*repository.Options)) *repository.Repository {
	t.Helper()
	opts := repository.Options{
		Location: loc, Password: password, WorkDir: t.TempDir(), ConnectTimeout: 30 * time.Second,
		Identity: repository.Identity{Hostname: "node-a", Username: "ferry"},
	}
	for _, m := range mutate {
		m(&opts)
	}
	r, err := repository.Open(context.Background(), opts)
	if err != nil {
		t.Fatalf("open repository: %v", err)
	}
	t.Cleanup(func() { _ = r.Close(context.Background()) })
	return r
}

func contextWithCancel(parent context.Context) (context.Context, context.CancelFunc) {
	return context.WithCancel(parent)
}
