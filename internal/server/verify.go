package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/pflag"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/backuprecord"
	"github.com/ferry-backup/ferry/internal/controller/backupverification"
	"github.com/ferry-backup/ferry/internal/repoaccess"
	"github.com/ferry-backup/ferry/internal/repository"
	"github.com/ferry-backup/ferry/internal/uploader"
)

// logErrors is how many errors per volume the Job's log names (the result keeps fewer).
const logErrors = 100

// VerifyOptions configure `ferry-server verify`, the command of a backup verification Job.
type VerifyOptions struct {
	JobOptions
	// Backup names the Backup to verify; Location its storage location.
	Backup, Location string
	// Percent of the files are read back in full.
	Percent float64
	// Request is the verify-requested annotation this run answers (echoed in the result).
	Request string
}

// NewVerifyOptions returns the defaults.
func NewVerifyOptions() VerifyOptions {
	return VerifyOptions{JobOptions: newJobOptions("ferry-verify"), Percent: backupverification.DefaultPercent}
}

// AddFlags registers the command's flags.
func (o *VerifyOptions) AddFlags(fs *pflag.FlagSet) {
	o.addFlags(fs)
	fs.StringVar(&o.Backup, "backup", o.Backup, "the Backup to verify")
	fs.StringVar(&o.Location, "location", o.Location, "its backup storage location")
	fs.Float64Var(&o.Percent, "percent", o.Percent, "percent of the files read back in full (0-100); the others are checked in the index")
	fs.StringVar(&o.Request, "request", o.Request, "the request this run answers, echoed in the result")
}

// Validate reports invalid settings, naming their flags.
func (o *VerifyOptions) Validate() error {
	errs := o.validate()
	if o.Backup == "" {
		errs = append(errs, errors.New("--backup is required"))
	}
	if o.Location == "" {
		errs = append(errs, errors.New("--location is required"))
	}
	if o.Percent < 0 || o.Percent > 100 {
		errs = append(errs, fmt.Errorf("--percent %g: want 0 to 100", o.Percent))
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
	o.report(out, "verify", backupverification.ResultLine(res))
	if err == nil && res.Errors > 0 {
		err = fmt.Errorf("backup %s: %d damaged entries", o.Backup, res.Errors)
	}
	return err
}

// verify fills res.Volumes; the error says why not every volume could be verified.
func verify(ctx context.Context, o VerifyOptions, res *velerov1.BackupVerification, out io.Writer) error {
	_, access, err := o.connect()
	if err != nil {
		return err
	}
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
