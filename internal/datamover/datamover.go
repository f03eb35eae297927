// Package datamover provides ferry-datamover, the process that runs in the per-operation mover
// pod of the CSI data mover path and moves one volume's data: it waits until its node's agent
// lets it run (the operation turns InProgress), uploads the mounted volume into the repository
// or restores a snapshot into it, and reports through Kubernetes Events on its DataUpload or
// DataDownload and through its termination message.
package datamover

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/pflag"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov2alpha1 "github.com/ferry-backup/ferry/api/v2alpha1"
	"github.com/ferry-backup/ferry/internal/exposer"
	"github.com/ferry-backup/ferry/internal/nodeconfig"
	"github.com/ferry-backup/ferry/internal/repoaccess"
	"github.com/ferry-backup/ferry/internal/scheme"
)

// The mover reads its operation and the repository's location and password, and writes Events.
// `ferry install --credential-secrets` adds the locations' storage credentials.
// +kubebuilder:rbac:groups=velero.io,resources=datauploads;datadownloads,verbs=get;list;watch,namespace=velero
// +kubebuilder:rbac:groups=velero.io,resources=backupstoragelocations,verbs=get,namespace=velero
// +kubebuilder:rbac:groups=velero.io,resources=backuprepositories,verbs=get;list,namespace=velero
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get,resourceNames=velero-repo-credentials;ferry-applied-repo-credentials,namespace=velero
// +kubebuilder:rbac:groups="",resources=events,verbs=get;create;update,namespace=velero

// Options configure one data movement.
type Options struct {
	// Namespace holds the DataUpload or DataDownload.
	Namespace string
	// DataUpload is the DataUpload to carry out (exclusive with DataDownload).
	DataUpload string
	// DataDownload is the DataDownload to carry out (exclusive with DataUpload).
	DataDownload string
	// VolumePath is where the mover pod mounts the volume.
	VolumePath string
	// WorkDir holds Kopia's caches.
	WorkDir string
	// Parallel is the number of files read or written at once; 0: the uploader's default.
	Parallel int
	// TerminationLog receives the result (the container's termination message).
	TerminationLog string
	// PodName and NodeName are reported in Events.
	PodName, NodeName string
	// CredentialsFile is the AWS shared credentials file for S3 locations without
	// spec.credential ($AWS_SHARED_CREDENTIALS_FILE: the node-agent's own, which the pod gets).
	CredentialsFile string
}

// NewOptions returns the defaults.
func NewOptions() Options {
	return Options{Namespace: "velero", VolumePath: exposer.VolumePath, WorkDir: filepath.Join(os.TempDir(), "ferry-datamover"),
		TerminationLog: "/dev/termination-log", PodName: os.Getenv("POD_NAME"), NodeName: os.Getenv("NODE_NAME"),
		CredentialsFile: os.Getenv("AWS_SHARED_CREDENTIALS_FILE")}
}

// AddFlags registers the mover's flags.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Namespace, "namespace", o.Namespace, "namespace of the DataUpload or DataDownload")
	fs.StringVar(&o.DataUpload, "data-upload", o.DataUpload, "name of the DataUpload to carry out")
	fs.StringVar(&o.DataDownload, "data-download", o.DataDownload, "name of the DataDownload to carry out")
	fs.StringVar(&o.VolumePath, "volume-path", o.VolumePath, "where the volume is mounted in this pod")
	fs.StringVar(&o.WorkDir, "work-dir", o.WorkDir, "directory for the repository's caches")
	fs.IntVar(&o.Parallel, "parallel", o.Parallel, "files read or written at once (0: the default)")
	fs.StringVar(&o.TerminationLog, "termination-log", o.TerminationLog, "file that receives the result")
}

// Validate reports invalid settings, naming their flags.
func (o *Options) Validate() error {
	if (o.DataUpload == "") == (o.DataDownload == "") {
		return errors.New("exactly one of --data-upload and --data-download is required")
	}
	if o.Namespace == "" || o.VolumePath == "" {
		return errors.New("--namespace and --volume-path must not be empty")
	}
	if !filepath.IsAbs(o.WorkDir) {
		return fmt.Errorf("--work-dir %q must be an absolute directory", o.WorkDir)
	}
	if o.Parallel < 0 {
		return fmt.Errorf("--parallel %d must not be negative", o.Parallel)
	}
	return nil
}

// Run carries out the data movement and writes its result. An error means no result could be
// reached (the API server unreachable, say): the container exits non-zero and is restarted.
func Run(ctx context.Context, o Options) error {
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("API server configuration: %w", err)
	}
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme.New()})
	if err != nil {
		return fmt.Errorf("API client: %w", err)
	}
	m := &mover{opts: o, client: c}
	res, err := m.run(ctx)
	if err != nil {
		return err
	}
	m.report(context.WithoutCancel(ctx), res)
	if err := os.WriteFile(o.TerminationLog, []byte(res.Encode()), 0o644); err != nil {
		return fmt.Errorf("write the result to %s: %w", o.TerminationLog, err)
	}
	return nil
}

type mover struct {
	opts   Options
	client client.WithWatch
	obj    client.Object
	// progressSent is when the Progress Event was last written.
	progressSent time.Time
}

func (m *mover) newObject() (client.Object, client.ObjectList, string) {
	if m.opts.DataUpload != "" {
		return &velerov2alpha1.DataUpload{}, &velerov2alpha1.DataUploadList{}, m.opts.DataUpload
	}
	return &velerov2alpha1.DataDownload{}, &velerov2alpha1.DataDownloadList{}, m.opts.DataDownload
}

// run waits for the go-ahead and moves the data.
func (m *mover) run(ctx context.Context) (exposer.Result, error) {
	obj, err := m.waitInProgress(ctx)
	if err != nil {
		if errors.Is(err, errEnded) {
			return exposer.Result{Phase: exposer.ReasonCanceled, Message: err.Error()}, nil
		}
		if ctx.Err() != nil {
			return exposer.Result{Phase: exposer.ReasonCanceled, Message: "stopped before it began"}, nil
		}
		return exposer.Result{}, err
	}
	m.obj = obj
	access := repoaccess.New(repoaccess.Options{
		Client: m.client, Namespace: m.opts.Namespace, WorkDir: m.opts.WorkDir, Identity: repoaccess.AgentIdentity, CredentialsFile: m.opts.CredentialsFile,
		LockCheckTimeout: func() time.Duration { return nodeconfig.Default().BackupRepositoryLockCheckTimeout },
	})
	defer access.Close(context.WithoutCancel(ctx))
	switch o := obj.(type) {
	case *velerov2alpha1.DataUpload:
		return m.upload(ctx, access, o), nil
	case *velerov2alpha1.DataDownload:
		return m.download(ctx, access, o), nil
	}
	return exposer.Result{}, errors.New("unreachable")
}

// errEnded means the operation ended (or was canceled) before its mover began.
var errEnded = errors.New("the operation ended before the mover began")

// waitInProgress watches the operation until its node's agent marks it InProgress.
func (m *mover) waitInProgress(ctx context.Context) (client.Object, error) {
	obj, list, name := m.newObject()
	key := client.ObjectKey{Namespace: m.opts.Namespace, Name: name}
	for {
		if err := m.client.Get(ctx, key, obj); err != nil {
			return nil, fmt.Errorf("read %s: %w", key, err)
		}
		if phase, cancel := phaseOf(obj); cancel || phase.Terminal() {
			return nil, fmt.Errorf("%w (phase %s, cancel %t)", errEnded, phase, cancel)
		} else if phase == velerov2alpha1.DataMovePhaseInProgress {
			return obj, nil
		}
		w, err := m.client.Watch(ctx, list, client.InNamespace(m.opts.Namespace),
			client.MatchingFieldsSelector{Selector: fields.OneTermEqualSelector("metadata.name", name)},
			&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: obj.GetResourceVersion()}})
		if err != nil {
			return nil, fmt.Errorf("watch %s: %w", key, err)
		}
		// Any change, or the watch ending, reads the object again.
		select {
		case <-ctx.Done():
			w.Stop()
			return nil, ctx.Err()
		case <-w.ResultChan():
		}
		w.Stop()
	}
}

func phaseOf(obj client.Object) (velerov2alpha1.DataMovePhase, bool) {
	switch o := obj.(type) {
	case *velerov2alpha1.DataUpload:
		return o.Status.Phase, o.Spec.Cancel
	case *velerov2alpha1.DataDownload:
		return o.Status.Phase, o.Spec.Cancel
	}
	return "", false
}
