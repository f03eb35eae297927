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
	"github.com/ferry-backup/ferry/internal/backuprecord"
	"github.com/ferry-backup/ferry/internal/controller/backupverification"
	"github.com/ferry-backup/ferry/internal/manager"
	"github.com/ferry-backup/ferry/internal/nodeconfig"
	"github.com/ferry-backup/ferry/internal/repoaccess"
	"github.com/ferry-backup/ferry/internal/repository"
	"github.com/ferry-backup/ferry/internal/scheme"
	"github.com/ferry-backup/ferry/internal/uploader"
)

// logErrors is how many errors per volume the Job's log names (the result keeps fewer).
const logErrors = 100

// VerifyOptions configure `ferry-server verify`, the command of a backup verification Job.
type VerifyOptions struct {
	manager.Options
	// Backup names the Backup to verify; Location its storage location.
	Backup, Location string
	// Percent of the files are read back in full.
	Percent float64
	// Request is the verify-requested annotation this run answers (echoed in the result).
	Request string
	// WorkDir holds the connection of this run.
	WorkDir string
	// TerminationLog is where the result goes for the controller to read.
	TerminationLog string
}

// NewVerifyOptions returns the defaults.
func NewVerifyOptions() VerifyOptions {
	return VerifyOptions{Options: manager.NewOptions("0", "0"), Percent: backupverification.DefaultPercent,
		WorkDir: filepath.Join(os.TempDir(), "ferry-verify"), TerminationLog: "/dev/termination-log"}
}

// AddFlags registers the command's flags.
func (o *VerifyOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "kubeconfig file (default: $KUBECONFIG, in-cluster, ~/.kube/config)")
	fs.StringVar(&o.Namespace, "namespace", o.Namespace, "namespace Ferry is installed in")
	fs.StringVar(&o.Backup, "backup", o.Backup, "the Backup to verify")
	fs.StringVar(&o.Location, "location", o.Location, "its backup storage location")
	fs.Float64Var(&o.Percent, "percent", o.Percent, "percent of the files read back in full (0-100); the others are checked in the index")
	fs.StringVar(&o.Request, "request", o.Request, "the request this run answers, echoed in the result")
	fs.StringVar(&o.WorkDir, "work-dir", o.WorkDir, "directory for the repository connection")
	fs.StringVar(&o.TerminationLog, "termination-log", o.TerminationLog, "file the result is written to (the container's termination message)")
}

// Validate reports invalid settings, naming their flags.
func (o *VerifyOptions) Validate() error {
	var errs []error
	if o.Backup == "" {
		errs = append(errs, errors.New("--backup is required"))
	}
	if o.Location == "" {
		errs = append(errs, errors.New("--location is required"))
	}
	if o.Percent < 0 || o.Percent > 100 {
		errs = append(errs, fmt.Errorf("--percent %g: want 0 to 100", o.Percent))
	}
	if !filepath.IsAbs(o.WorkDir) {
		errs = append(errs, fmt.Errorf("--work-dir %q must be an absolute directory", o.WorkDir))
	}
	if o.Namespace == "" {
		errs = append(errs, errors.New("--namespace is required"))
	}
	return errors.Join(errs...)
}

// Verify verifies every volume snapshot of the backup and reports the result: each damaged
// entry as a line of out, then the result as the termination message and as the last line of
// out. The error says that the backup is damaged or could not be verified; the result is
// reported either way.
func Verify(ctx context.Context, o VerifyOptions, out io.Writer) error {
	res := velerov1.BackupVerification{Request: o.Request, Backup: o.Backup, Percent: o.Percent, Start: time.Now()}
	err := verify(ctx, o, &res, out)
	res.End = time.Now()
	res.Completed = err == nil
	if err != nil {
		res.Message = err.Error()
	}
	line := backupverification.ResultLine(res)
	fmt.Fprintln(out, line)
	if werr := os.WriteFile(o.TerminationLog, []byte(line+"\n"), 0o644); werr != nil {
		fmt.Fprintf(out, "ferry-server verify: write the result to %s: %v (the log's last line holds it)\n", o.TerminationLog, werr)
	}
	if err == nil && res.Errors > 0 {
		err = fmt.Errorf("backup %s: %d damaged entries", o.Backup, res.Errors)
	}
	return err
}

// verify fills res.Volumes; the error says why not every volume could be verified.
func verify(ctx context.Context, o VerifyOptions, res *velerov1.BackupVerification, out io.Writer) error {
	cfg, err := o.RESTConfig()
	if err != nil {
		return err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme.New()})
	if err != nil {
		return err
	}
	lockWait := nodeconfig.Default().BackupRepositoryLockCheckTimeout
	access := repoaccess.New(repoaccess.Options{
		Client: c, Namespace: o.Namespace, WorkDir: o.WorkDir, Identity: Identity, CredentialsFile: o.CredentialsFile,
		LockCheckTimeout: func() time.Duration { return lockWait },
	})
	defer access.Close(context.WithoutCancel(ctx))
	// Without local caches: what is read must come from the store.
	rep, release, err := access.Open(ctx, o.Location, repoaccess.ForReading)
	if err != nil {
		return err
	}
	defer release()
	var rec backuprecord.Record
	if err := rep.LoadRecord(ctx, backuprecord.Kind, o.Backup, &rec); err != nil {
		return fmt.Errorf("the record of backup %s in location %s: %w", o.Backup, o.Location, err)
	}
	repos := map[string]*verifiedRepository{"": {rep: rep}}
	defer func() {
		for ns, vr := range repos {
			if ns != "" {
				vr.release()
			}
		}
	}()
	var problems []error
	for _, vol := range rec.Volumes {
		v := velerov1.VolumeVerification{Volume: volumeName(vol), SnapshotID: vol.SnapshotID}
		if vol.SnapshotID == "" {
			v.Message = fmt.Sprintf("no snapshot (the volume's backup ended %s)", vol.Phase)
			res.Volumes = append(res.Volumes, v)
			continue
		}
		vr, err := repositoryOf(ctx, access, o.Location, vol.RepositoryNamespace, repos)
		if err != nil {
			return err
		}
		r, err := uploader.Verify(ctx, vr.rep, vol.SnapshotID, uploader.VerifyOptions{Percent: o.Percent, Packs: vr.packs, MaxErrors: logErrors})
		v.Files, v.FilesRead, v.BytesRead, v.Errors = r.Files, r.FilesRead, r.BytesRead, r.ErrorCount
		for _, e := range r.Errors {
			fmt.Fprintf(out, "volume %s, snapshot %s: %s\n", v.Volume, vol.SnapshotID, e)
			v.FirstErrors = append(v.FirstErrors, e.Error())
		}
		if err != nil {
			v.Message = err.Error()
			problems = append(problems, fmt.Errorf("volume %s: %w", v.Volume, err))
		}
		res.Errors += v.Errors
		res.Volumes = append(res.Volumes, v)
		if ctx.Err() != nil {
			break
		}
	}
	return errors.Join(problems...)
}

// verifiedRepository is a repository that holds snapshots of the backup, with its pack blobs.
type verifiedRepository struct {
	rep     *repository.Repository
	packs   map[string]struct{}
	listed  bool
	release func()
}

// repositoryOf returns the repository that holds a volume's snapshot: the location's, or in
// Velero's layout the one of namespace, which the record names. Each is opened and its packs
// listed once; the location's is opened by the caller.
func repositoryOf(ctx context.Context, access *repoaccess.Access, location, namespace string,
	repos map[string]*verifiedRepository) (*verifiedRepository, error) {
	vr := repos[namespace]
	if vr == nil {
		rep, release, err := access.OpenNamespace(ctx, location, namespace, repoaccess.ForReading)
		if err != nil {
			return nil, fmt.Errorf("the repository of namespace %s: %w", namespace, err)
		}
		vr = &verifiedRepository{rep: rep, release: release}
		repos[namespace] = vr
	}
	if !vr.listed {
		packs, err := vr.rep.PackBlobs(ctx)
		if err != nil {
			return nil, err
		}
		vr.packs, vr.listed = packs, true
	}
	return vr, nil
}

// volumeName is <namespace>/<pod>/<volume>, or <namespace>/pvc/<claim> for a claim no pod named.
func volumeName(v backuprecord.Volume) string {
	if v.Pod == "" {
		return v.Namespace + "/pvc/" + v.Claim
	}
	return v.Namespace + "/" + v.Pod + "/" + v.Volume
}
