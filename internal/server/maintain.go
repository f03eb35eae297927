package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/pflag"
	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/controller/backuprepository"
	"github.com/ferry-backup/ferry/internal/repoaccess"
	"github.com/ferry-backup/ferry/internal/repository"
)

// MaintainOptions configure `ferry-server maintain`, the command of a maintenance Job.
type MaintainOptions struct {
	JobOptions
	// Repository names the BackupRepository to maintain.
	Repository string
	// Mode is quick or full.
	Mode string
}

// NewMaintainOptions returns the defaults.
func NewMaintainOptions() MaintainOptions {
	return MaintainOptions{JobOptions: newJobOptions("ferry-maintain"), Mode: string(repository.MaintenanceQuick)}
}

// AddFlags registers the command's flags.
func (o *MaintainOptions) AddFlags(fs *pflag.FlagSet) {
	o.addFlags(fs)
	fs.StringVar(&o.Repository, "repository", o.Repository, "the BackupRepository to maintain")
	fs.StringVar(&o.Mode, "mode", o.Mode, "quick or full")
}

// Validate reports invalid settings, naming their flags.
func (o *MaintainOptions) Validate() error {
	errs := o.validate()
	if o.Repository == "" {
		errs = append(errs, errors.New("--repository is required"))
	}
	if o.Mode != string(repository.MaintenanceQuick) && o.Mode != string(repository.MaintenanceFull) {
		errs = append(errs, fmt.Errorf("--mode %q: want quick or full", o.Mode))
	}
	return errors.Join(errs...)
}

// Maintain runs one maintenance of the repository and reports the result: as the termination
// message, and as the last line of out (which the termination message falls back to). The error
// is the run's failure; the result is reported either way.
func Maintain(ctx context.Context, o MaintainOptions, out io.Writer) error {
	res := backuprepository.JobResult{Mode: o.Mode, Start: time.Now()}
	err := maintain(ctx, o, &res)
	res.End = time.Now()
	res.Succeeded = err == nil
	if err != nil {
		res.Message = fmt.Sprintf("%s maintenance failed: %v", o.Mode, err)
	}
	o.report(out, "maintain", res.Line())
	return err
}

func maintain(ctx context.Context, o MaintainOptions, res *backuprepository.JobResult) error {
	c, access, err := o.connect()
	if err != nil {
		return err
	}
	defer access.Close(context.WithoutCancel(ctx))
	br := &velerov1.BackupRepository{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: o.Namespace, Name: o.Repository}, br); err != nil {
		return fmt.Errorf("backup repository %s/%s: %w", o.Namespace, o.Repository, err)
	}
	rep, release, err := access.OpenFor(ctx, br.Spec.BackupStorageLocation, br.Spec.VolumeNamespace, repoaccess.ForBackup)
	if err != nil {
		return err
	}
	defer release()
	mode := repository.MaintenanceQuick
	if o.Mode == string(repository.MaintenanceFull) {
		mode = repository.MaintenanceFull
	}
	rec, err := rep.Maintain(ctx, mode, repository.MaintenanceOptions{})
	res.Message = rec.Message
	if err != nil {
		return err
	}
	res.Freed = rec.StorageBytesBefore - rec.StorageBytesAfter
	// The stats are a report on the repository, not part of maintaining it: failing to take
	// them fails nothing.
	stats, err := rep.Stats(ctx)
	if err != nil {
		res.Message += fmt.Sprintf("; stats not measured: %v", err)
		return nil
	}
	res.Stats = &stats
	return nil
}
