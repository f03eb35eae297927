package repository

import (
	"context"

	"github.com/go-logr/logr"
	"github.com/go-logr/zapr"
	"github.com/kopia/kopia/repo/logging"
	"go.uber.org/zap"
)

// WithLogger returns a context in which Kopia logs through log's zap core, under the name
// "kopia.<module>", so Ferry's and Kopia's lines share one format, level and destination.
// Without it Kopia logs nothing. A logger not backed by zap leaves Kopia silent.
func WithLogger(ctx context.Context, log logr.Logger) context.Context {
	u, ok := log.GetSink().(zapr.Underlier)
	if !ok {
		return ctx
	}
	base := u.GetUnderlying().Named("kopia")
	return logging.WithLogger(ctx, func(module string) *zap.SugaredLogger {
		return base.Named(module).Sugar()
	})
}
