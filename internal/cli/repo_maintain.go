package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
)

// repoMaintainOptions configure `ferry repo maintain`.
type repoMaintainOptions struct {
	*Options
	// Full asks for full maintenance instead of quick.
	Full bool
	// Wait waits for the result; Timeout bounds the wait (0: none).
	Wait    bool
	Timeout time.Duration
}

func newRepoMaintainCommand(o *Options) *cobra.Command {
	mo := &repoMaintainOptions{Options: o}
	cmd := &cobra.Command{
		Use:   "maintain NAME",
		Short: "Run a repository's maintenance now",
		Long: "Asks ferry-server for one maintenance run of the repository now (annotation " + velerov1.AnnotationMaintenanceRequested + "):\n" +
			"quick (indexes and metadata compacted) or, with --full, full (also the data no snapshot references\n" +
			"deleted, within Kopia's safety margins). It runs in a Job of its own as soon as no other maintenance\n" +
			"of the repository runs, and is recorded in status.recentMaintenance as scheduled runs are. With --wait,\n" +
			"waits for the result and exits non-zero when the run failed.",
		Example:           "  ferry repo maintain default-kopia --full --wait",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeNames(o, repoList, true),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			return mo.run(cmd.Context(), c, args[0])
		},
	}
	f := cmd.Flags()
	f.BoolVar(&mo.Full, "full", false, "run full maintenance (default: quick)")
	f.BoolVar(&mo.Wait, "wait", false, "wait for the result and exit non-zero when the run failed")
	f.DurationVar(&mo.Timeout, "timeout", 0, "give up waiting after this long, e.g. 2h (default: no limit)")
	return cmd
}

func (mo *repoMaintainOptions) run(ctx context.Context, c client.Client, name string) error {
	br := &velerov1.BackupRepository{}
	if err := mo.get(ctx, c, "backup repository", name, br); err != nil {
		return err
	}
	mode := "quick"
	if mo.Full {
		mode = "full"
	}
	request := mode + "@" + time.Now().UTC().Format(time.RFC3339Nano)
	patch := client.MergeFrom(br.DeepCopy())
	metav1.SetMetaDataAnnotation(&br.ObjectMeta, velerov1.AnnotationMaintenanceRequested, request)
	if err := c.Patch(ctx, br, patch); err != nil {
		return fmt.Errorf("ask for the maintenance of backup repository %s: %w", name, err)
	}
	if !mo.Wait {
		_, err := fmt.Fprintf(mo.Out, "%s maintenance of backup repository %s requested; its result will be in the annotation %s\n",
			mode, name, velerov1.AnnotationMaintenanceAnswer)
		return err
	}
	fmt.Fprintf(mo.Out, "Running %s maintenance of backup repository %s; Ctrl-C stops waiting, not the maintenance\n", mode, name)
	if mo.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, mo.Timeout)
		defer cancel()
	}
	a, err := waitMaintenance(ctx, c, br, request)
	if err != nil {
		return err
	}
	return printMaintenance(mo.Options, name, a)
}

// waitMaintenance reads the repository until its maintenance answer answers request.
func waitMaintenance(ctx context.Context, c client.Client, br *velerov1.BackupRepository, request string) (velerov1.MaintenanceAnswer, error) {
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	var failing time.Time
	for {
		err := c.Get(ctx, client.ObjectKeyFromObject(br), br)
		switch {
		case err == nil:
			failing = time.Time{}
			var a velerov1.MaintenanceAnswer
			if s := br.Annotations[velerov1.AnnotationMaintenanceAnswer]; s != "" && json.Unmarshal([]byte(s), &a) == nil && a.Request == request {
				return a, nil
			}
		case failing.IsZero():
			failing = time.Now()
		case time.Since(failing) > readErrorLimit:
			return velerov1.MaintenanceAnswer{}, fmt.Errorf("read backup repository %s: %w", br.Name, err)
		}
		select {
		case <-ctx.Done():
			return velerov1.MaintenanceAnswer{}, fmt.Errorf("stopped waiting for the maintenance of backup repository %s (it goes on): %w", br.Name, context.Cause(ctx))
		case <-tick.C:
		}
	}
}

// printMaintenance prints the answer; an error when the run failed.
func printMaintenance(o *Options, name string, a velerov1.MaintenanceAnswer) error {
	ran := ""
	if a.Job != "" {
		ran = fmt.Sprintf(" in Job %s (%s)", a.Job, a.End.Sub(a.Start).Round(time.Second))
	}
	if !a.Succeeded {
		return fmt.Errorf("%s maintenance of backup repository %s failed%s: %s", orDefault(a.Mode, "requested"), name, ran, a.Message)
	}
	_, err := fmt.Fprintf(o.Out, "%s maintenance of backup repository %s succeeded%s: %s\n", a.Mode, name, ran, a.Message)
	return err
}
