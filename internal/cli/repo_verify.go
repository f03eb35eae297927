package cli

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	velerov2alpha1 "github.com/ferry-backup/ferry/api/v2alpha1"
)

// repoVerifyOptions configure `ferry repo verify`.
type repoVerifyOptions struct {
	*Options
	// Percent of the files are read back in full.
	Percent float64
	// Timeout bounds the wait (0: none).
	Timeout time.Duration
}

func newRepoVerifyCommand(o *Options) *cobra.Command {
	vo := &repoVerifyOptions{Options: o}
	cmd := &cobra.Command{
		Use:   "verify NAME",
		Short: "Verify every backup whose data is in a repository",
		Long: "Asks ferry-server to verify, as `ferry backup verify` does, every Completed or PartiallyFailed backup of\n" +
			"the repository's storage location (for a repository of one volume namespace, Velero's layout, the\n" +
			"backups with a volume of that namespace), one Job per backup. Waits for every result, prints them per\n" +
			"backup and volume, and exits non-zero when damage was found or a backup could not be verified in full.",
		Example:           "  ferry repo verify default-kopia --percent 5",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeNames(o, repoList, true),
		RunE: func(cmd *cobra.Command, args []string) error {
			if vo.Percent < 0 || vo.Percent > 100 {
				return fmt.Errorf("--percent %g: want 0 to 100", vo.Percent)
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			return vo.run(cmd.Context(), c, args[0])
		},
	}
	f := cmd.Flags()
	f.Float64Var(&vo.Percent, "percent", 10, "percent of the files read back in full (0-100); every file's contents are looked up either way")
	f.DurationVar(&vo.Timeout, "timeout", 0, "give up waiting after this long, e.g. 2h (default: no limit)")
	return cmd
}

func (vo *repoVerifyOptions) run(ctx context.Context, c client.Client, name string) error {
	br := &velerov1.BackupRepository{}
	if err := vo.get(ctx, c, "backup repository", name, br); err != nil {
		return err
	}
	backups, err := repoBackups(ctx, c, br)
	if err != nil {
		return err
	}
	if len(backups) == 0 {
		_, err := fmt.Fprintf(vo.Out, "Backup repository %s holds no Completed or PartiallyFailed backup: nothing to verify\n", name)
		return err
	}
	requests := make([]string, len(backups))
	for i := range backups {
		if requests[i], err = requestVerification(ctx, c, &backups[i], vo.Percent); err != nil {
			return err
		}
	}
	fmt.Fprintf(vo.Out, "Verifying %d backups of repository %s (%g%% of the files read back); Ctrl-C stops waiting, not the verifications\n",
		len(backups), name, vo.Percent)
	if vo.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, vo.Timeout)
		defer cancel()
	}
	var failed []error
	for i := range backups {
		res, err := waitVerification(ctx, c, &backups[i], requests[i])
		if err != nil {
			return err
		}
		fmt.Fprintf(vo.Out, "\nBackup %s:\n", backups[i].Name)
		printVerification(vo.Out, res, "")
		if res.Failed() {
			failed = append(failed, &verificationFailedError{res})
		}
	}
	fmt.Fprintf(vo.Out, "\n%d of %d backups verified clean\n", len(backups)-len(failed), len(backups))
	return errors.Join(failed...)
}

// repoBackups lists the verifiable backups whose data is in the repository, by name.
func repoBackups(ctx context.Context, c client.Client, br *velerov1.BackupRepository) ([]velerov1.Backup, error) {
	list := &velerov1.BackupList{}
	if err := c.List(ctx, list, client.InNamespace(br.Namespace)); err != nil {
		return nil, fmt.Errorf("list the backups: %w", err)
	}
	var out []velerov1.Backup
	for _, b := range list.Items {
		location := b.Spec.StorageLocation
		if location == "" {
			location = b.Labels[velerov1.LabelStorageLocation]
		}
		if location != br.Spec.BackupStorageLocation ||
			(b.Status.Phase != velerov1.BackupPhaseCompleted && b.Status.Phase != velerov1.BackupPhasePartiallyFailed) {
			continue
		}
		if ns := br.Spec.VolumeNamespace; ns != "" {
			in, err := hasVolumeIn(ctx, c, &b, ns)
			if err != nil {
				return nil, err
			}
			if !in {
				continue
			}
		}
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b velerov1.Backup) int { return a.CreationTimestamp.Compare(b.CreationTimestamp.Time) })
	return out, nil
}

// hasVolumeIn reports whether the backup has a volume of namespace ns: a PodVolumeBackup of a
// pod there or a DataUpload of a claim there.
func hasVolumeIn(ctx context.Context, c client.Client, b *velerov1.Backup, ns string) (bool, error) {
	of := client.MatchingLabels{velerov1.LabelBackupName: b.Name}
	pvbs := &velerov1.PodVolumeBackupList{}
	if err := c.List(ctx, pvbs, client.InNamespace(b.Namespace), of); err != nil {
		return false, fmt.Errorf("list the pod volume backups of backup %s: %w", b.Name, err)
	}
	if slices.ContainsFunc(pvbs.Items, func(p velerov1.PodVolumeBackup) bool { return p.Spec.Pod.Namespace == ns }) {
		return true, nil
	}
	dus := &velerov2alpha1.DataUploadList{}
	if err := c.List(ctx, dus, client.InNamespace(b.Namespace), of); err != nil {
		return false, fmt.Errorf("list the data uploads of backup %s: %w", b.Name, err)
	}
	return slices.ContainsFunc(dus.Items, func(d velerov2alpha1.DataUpload) bool { return d.Spec.SourceNamespace == ns }), nil
}
