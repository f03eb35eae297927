package server

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/pflag"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferry-backup/ferry/internal/manager"
	"github.com/ferry-backup/ferry/internal/nodeconfig"
	"github.com/ferry-backup/ferry/internal/repoaccess"
	"github.com/ferry-backup/ferry/internal/scheme"
)

// JobOptions are the settings every command of a ferry-server Job shares (maintain, verify).
type JobOptions struct {
	manager.Options
	// WorkDir holds the repository connection (and caches) of this run.
	WorkDir string
	// TerminationLog is where the result goes for the controller to read.
	TerminationLog string
}

func newJobOptions(workDir string) JobOptions {
	return JobOptions{Options: manager.NewOptions("0", "0"), WorkDir: filepath.Join(os.TempDir(), workDir),
		TerminationLog: "/dev/termination-log"}
}

func (o *JobOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "kubeconfig file (default: $KUBECONFIG, in-cluster, ~/.kube/config)")
	fs.StringVar(&o.Namespace, "namespace", o.Namespace, "namespace Ferry is installed in")
	fs.StringVar(&o.WorkDir, "work-dir", o.WorkDir, "directory for the repository connection and caches")
	fs.StringVar(&o.TerminationLog, "termination-log", o.TerminationLog, "file the result is written to (the container's termination message)")
}

// validate reports invalid shared settings, naming their flags.
func (o *JobOptions) validate() []error {
	var errs []error
	if !filepath.IsAbs(o.WorkDir) {
		errs = append(errs, fmt.Errorf("--work-dir %q must be an absolute directory", o.WorkDir))
	}
	if o.Namespace == "" {
		errs = append(errs, errors.New("--namespace is required"))
	}
	return errs
}

// connect returns a client of the API server and repository access as the server's identity;
// close the access when done.
func (o *JobOptions) connect() (client.Client, *repoaccess.Access, error) {
	cfg, err := o.RESTConfig()
	if err != nil {
		return nil, nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme.New()})
	if err != nil {
		return nil, nil, err
	}
	lockWait := nodeconfig.Default().BackupRepositoryLockCheckTimeout
	access := repoaccess.New(repoaccess.Options{
		Client: c, Namespace: o.Namespace, WorkDir: o.WorkDir, Identity: Identity, CredentialsFile: o.CredentialsFile,
		LockCheckTimeout: func() time.Duration { return lockWait },
	})
	return c, access, nil
}

// report writes the result line as the last line of out and as the termination message.
func (o *JobOptions) report(out io.Writer, command, line string) {
	fmt.Fprintln(out, line)
	if err := os.WriteFile(o.TerminationLog, []byte(line+"\n"), 0o644); err != nil {
		fmt.Fprintf(out, "ferry-server %s: write the result to %s: %v (the log's last line holds it)\n", command, o.TerminationLog, err)
	}
}
