// Package logging provides the one structured logger every Ferry program writes through: a zap
// core behind a logr.Logger, with the level and format chosen by flags.
package logging

import (
	"fmt"

	"github.com/go-logr/logr"
	"github.com/spf13/pflag"
	"go.uber.org/zap/zapcore"
	ctrlzap "sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// Options choose the log level and format.
type Options struct {
	// Level is debug, info or error.
	Level string
	// Format is json or console.
	Format string
}

// NewOptions returns the defaults: info level, JSON lines.
func NewOptions() Options {
	return Options{Level: "info", Format: "json"}
}

// AddFlags registers --log-level and --log-format.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Level, "log-level", o.Level, "log level: debug, info or error")
	fs.StringVar(&o.Format, "log-format", o.Format, "log format: json or console")
}

// Validate reports an unknown level or format, naming the flag.
func (o *Options) Validate() error {
	if _, err := zapcore.ParseLevel(o.Level); err != nil || o.Level == "" {
		return fmt.Errorf("--log-level: %q is not one of debug, info, error", o.Level)
	}
	if o.Format != "json" && o.Format != "console" {
		return fmt.Errorf("--log-format: %q is not one of json, console", o.Format)
	}
	return nil
}

// New builds the logger. Call Validate first.
func New(o Options) logr.Logger {
	level, _ := zapcore.ParseLevel(o.Level)
	return ctrlzap.New(
		ctrlzap.UseDevMode(false),
		ctrlzap.Level(level),
		func(zo *ctrlzap.Options) {
			if o.Format == "console" {
				zo.Encoder = zapcore.NewConsoleEncoder(zapcore.EncoderConfig{
					TimeKey: "ts", LevelKey: "level", NameKey: "logger", MessageKey: "msg",
					EncodeTime: zapcore.ISO8601TimeEncoder, EncodeLevel: zapcore.CapitalLevelEncoder,
					EncodeDuration: zapcore.StringDurationEncoder,
				})
			}
		},
	)
}
