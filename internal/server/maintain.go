package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/pflag"
	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/controller/backuprepository"
	"github.com/ferry-backup/ferry/internal/manager"
	"github.com/ferry-backup/ferry/internal/nodeconfig"
	"github.com/ferry-backup/ferry/internal/repoaccess"
	"github.com/ferry-backup/ferry/internal/repository"
	"github.com/ferry-backup/ferry/internal/scheme"
)

// MaintainOptions configure `ferry-server maintain`, the command of a maintenance Job.
type MaintainOptions struct {
	manager.Options
	// Repository names the BackupRepository to maintain.
	Repository string
	// Mode is quick or full.
	Mode string
	// WorkDir holds the connection and caches of this run.
	WorkDir string
	// TerminationLog is where the result goes for the controller to read.
	TerminationLog string
}

// NewMaintainOptions returns the defaults.
func NewMaintainOptions() MaintainOptions {
	return MaintainOptions{Options: manager.NewOptions("0", "0"), Mode: string(repository.MaintenanceQuick),
		WorkDir: filepath.Join(os.TempDir(), "ferry-maintain"), TerminationLog: "/dev/termination-log"}
}

// AddFlags registers the command's flags.
func (o *MaintainOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "kubeconfig file (default: $KUBECONFIG, in-cluster, ~/.kube/config)")
	fs.StringVar(&o.Namespace, "namespace", o.Namespace, "namespace Ferry is installed in")
	fs.StringVar(&o.Repository, "repository", o.Repository, "the BackupRepository to maintain")
	fs.StringVar(&o.Mode, "mode", o.Mode, "quick or full")
	fs.StringVar(&o.WorkDir, "work-dir", o.WorkDir, "directory for the repository connection and caches")
	fs.StringVar(&o.TerminationLog, "termination-log", o.TerminationLog, "file the result is written to (the container's termination message)")
}

// Validate reports invalid settings, naming their flags.
func (o *MaintainOptions) Validate() error {
	var errs []error
	if o.Repository == "" {
		errs = append(errs, errors.New("--repository is required"))
	}
	if o.Mode != string(repository.MaintenanceQuick) && o.Mode != string(repository.MaintenanceFull) {
		errs = append(errs, fmt.Errorf("--mode %q: want quick or full", o.Mode))
	}
	if !filepath.IsAbs(o.WorkDir) {
		errs = append(errs, fmt.Errorf("--work-dir %q must be an absolute directory", o.WorkDir))
	}
	if o.Namespace == "" {
		errs = append(errs, errors.New("--namespace is required"))
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
	line := res.Line()
	fmt.Fprintln(out, line)
	if werr := os.WriteFile(o.TerminationLog, []byte(line+"\n"), 0o644); werr != nil {
		fmt.Fprintf(out, "ferry-server maintain: write the result to %s: %v (the log's last line holds it)\n", o.TerminationLog, werr)
	}
	return err
}

func maintain(ctx context.Context, o MaintainOptions, res *backuprepository.JobResult) error {
	cfg, err := o.RESTConfig()
	if err != nil {
		return err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme.New()})
	if err != nil {
		return err
	}
	br := &velerov1.BackupRepository{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: o.Namespace, Name: o.Repository}, br); err != nil {
		return fmt.Errorf("backup repository %s/%s: %w", o.Namespace, o.Repository, err)
	}
	lockWait := nodeconfig.Default().BackupRepositoryLockCheckTimeout
	access := repoaccess.New(repoaccess.Options{
		Client: c, Namespace: o.Namespace, WorkDir: o.WorkDir, Identity: Identity, CredentialsFile: o.CredentialsFile,
		LockCheckTimeout: func() time.Duration { return lockWait },
	})
	defer access.Close(context.WithoutCancel(ctx))
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
