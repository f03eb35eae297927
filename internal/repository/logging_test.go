package repository_test

import (
	"bytes"
	"strings"
	"sync"
	"testing"

	"github.com/go-logr/zapr"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/ferry-backup/ferry/internal/repository"
	"github.com/ferry-backup/ferry/internal/repository/repotest"
)

type syncBuffer struct {
	mu sync.Mutex
	bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Buffer.Write(p)
}

func (b *syncBuffer) Sync() error { return nil }

func TestKopiaLogsThroughFerrysLogger(t *testing.T) {
	var buf syncBuffer
	core := zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), &buf, zapcore.DebugLevel)
	ctx := repository.WithLogger(t.Context(), zapr.NewLogger(zap.New(core)))

	loc := repotest.Filesystem(t)
	r, err := repository.Open(ctx, repository.Options{Location: loc, Password: "secret-password-123", WorkDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(ctx)
	if _, err := r.Maintain(ctx, repository.MaintenanceQuick, repository.MaintenanceOptions{}); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if !strings.Contains(out, `"logger":"kopia.`) {
		t.Fatalf("no Kopia log lines reached the logger:\n%.2000s", out)
	}
	if strings.Contains(out, "secret-password-123") {
		t.Fatal("the repository password appears in the logs")
	}
}
