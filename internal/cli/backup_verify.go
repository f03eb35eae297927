package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
)

// backupVerifyOptions configure `ferry backup verify`.
type backupVerifyOptions struct {
	*Options
	// Percent of the files are read back in full.
	Percent float64
	// Wait waits for the result; Timeout bounds the wait (0: none).
	Wait    bool
	Timeout time.Duration
}

func newBackupVerifyCommand(o *Options) *cobra.Command {
	vo := &backupVerifyOptions{Options: o}
	cmd := &cobra.Command{
		Use:   "verify NAME",
		Short: "Check that a backup's data can be read back",
		Long: "Asks ferry-server to verify the backup (annotation " + velerov1.AnnotationVerifyRequested + "): in a Job of its\n" +
			"own, every content of every volume snapshot is looked up in the repository's index and its pack in\n" +
			"the store, and --percent of the files are read back in full, decrypted and checked against their\n" +
			"hashes. Damage is named by volume and file. Waits for the result and prints it per volume; exits\n" +
			"non-zero when damage was found or not every volume could be verified.",
		Example:           "  ferry backup verify nightly-20261120 --percent 100",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeNames(o, backupList, true),
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
	f.BoolVar(&vo.Wait, "wait", true, "wait for the result (--wait=false only asks)")
	f.DurationVar(&vo.Timeout, "timeout", 0, "give up waiting after this long, e.g. 2h (default: no limit)")
	return cmd
}

func (vo *backupVerifyOptions) run(ctx context.Context, c client.Client, name string) error {
	b := &velerov1.Backup{}
	if err := vo.get(ctx, c, "backup", name, b); err != nil {
		return err
	}
	request, err := requestVerification(ctx, c, b, vo.Percent)
	if err != nil {
		return err
	}
	if !vo.Wait {
		_, err := fmt.Fprintf(vo.Out, "Verification of backup %s requested; its result will be in the annotation %s\n", name, velerov1.AnnotationLastVerification)
		return err
	}
	fmt.Fprintf(vo.Out, "Verifying backup %s (%g%% of the files read back); Ctrl-C stops waiting, not the verification\n", name, vo.Percent)
	if vo.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, vo.Timeout)
		defer cancel()
	}
	res, err := waitVerification(ctx, c, b, request)
	if err != nil {
		return err
	}
	printVerification(vo.Out, res, "")
	if res.Failed() {
		return &verificationFailedError{res}
	}
	return nil
}

// requestVerification asks for the backup's verification and returns the request.
func requestVerification(ctx context.Context, c client.Client, b *velerov1.Backup, percent float64) (string, error) {
	request := strconv.FormatFloat(percent, 'f', -1, 64) + "@" + time.Now().UTC().Format(time.RFC3339Nano)
	patch := client.MergeFrom(b.DeepCopy())
	metav1.SetMetaDataAnnotation(&b.ObjectMeta, velerov1.AnnotationVerifyRequested, request)
	if err := c.Patch(ctx, b, patch); err != nil {
		return "", fmt.Errorf("ask for the verification of backup %s: %w", b.Name, err)
	}
	return request, nil
}

// waitVerification reads the Backup until its last verification answers request.
func waitVerification(ctx context.Context, c client.Client, b *velerov1.Backup, request string) (velerov1.BackupVerification, error) {
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	var failing time.Time
	for {
		err := c.Get(ctx, client.ObjectKeyFromObject(b), b)
		switch {
		case err == nil:
			failing = time.Time{}
			var res velerov1.BackupVerification
			if s := b.Annotations[velerov1.AnnotationLastVerification]; s != "" && json.Unmarshal([]byte(s), &res) == nil && res.Request == request {
				return res, nil
			}
		case failing.IsZero():
			failing = time.Now()
		case time.Since(failing) > readErrorLimit:
			return velerov1.BackupVerification{}, fmt.Errorf("read backup %s: %w", b.Name, err)
		}
		select {
		case <-ctx.Done():
			return velerov1.BackupVerification{}, fmt.Errorf("stopped waiting for the verification of backup %s (it goes on): %w", b.Name, context.Cause(ctx))
		case <-tick.C:
		}
	}
}

// printVerification prints a table of the volumes, then the damaged entries, each line after
// indent.
func printVerification(out io.Writer, res velerov1.BackupVerification, indent string) {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, indent+"VOLUME\tSNAPSHOT\tFILES\tREAD\tBYTES READ\tERRORS")
	for _, v := range res.Volumes {
		errs := strconv.FormatInt(v.Errors, 10)
		if v.Message != "" {
			errs += " (" + v.Message + ")"
		}
		fmt.Fprintf(w, "%s%s\t%s\t%d\t%d\t%d\t%s\n", indent, v.Volume, v.SnapshotID, v.Files, v.FilesRead, v.BytesRead, errs)
	}
	_ = w.Flush()
	for _, v := range res.Volumes {
		for _, e := range v.FirstErrors {
			fmt.Fprintf(out, "%svolume %s: %s\n", indent, v.Volume, e)
		}
		if shown := int64(len(v.FirstErrors)); v.Errors > shown {
			fmt.Fprintf(out, "%svolume %s: %d more damaged entries (the log of Job %s names them)\n", indent, v.Volume, v.Errors-shown, res.Job)
		}
	}
	if res.Message != "" {
		fmt.Fprintln(out, indent+"Note:", res.Message)
	}
}

// verificationFailedError says that a verification found damage or could not verify everything.
type verificationFailedError struct{ res velerov1.BackupVerification }

func (e *verificationFailedError) Error() string {
	var why []string
	if e.res.Errors > 0 {
		why = append(why, fmt.Sprintf("%d damaged entries", e.res.Errors))
	}
	if !e.res.Completed {
		why = append(why, "not every volume could be verified: "+e.res.Message)
	}
	return fmt.Sprintf("backup %s failed verification: %s", e.res.Backup, strings.Join(why, "; "))
}
