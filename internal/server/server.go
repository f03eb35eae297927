// Package server provides ferry-server: the control side that validates storage locations,
// keeps backup repositories, creates the Backups of Schedules, and turns Backups and Restores
// into node-agent work.
package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	velerov2alpha1 "github.com/ferry-backup/ferry/api/v2alpha1"
	"github.com/ferry-backup/ferry/internal/controller/backup"
	"github.com/ferry-backup/ferry/internal/controller/backuprepository"
	"github.com/ferry-backup/ferry/internal/controller/backupstoragelocation"
	"github.com/ferry-backup/ferry/internal/controller/backupsync"
	"github.com/ferry-backup/ferry/internal/controller/backupverification"
	"github.com/ferry-backup/ferry/internal/controller/deletebackuprequest"
	"github.com/ferry-backup/ferry/internal/controller/nodeagentconfig"
	"github.com/ferry-backup/ferry/internal/controller/operationdeadline"
	"github.com/ferry-backup/ferry/internal/controller/repositorypassword"
	"github.com/ferry-backup/ferry/internal/controller/restore"
	"github.com/ferry-backup/ferry/internal/controller/schedule"
	"github.com/ferry-backup/ferry/internal/manager"
	"github.com/ferry-backup/ferry/internal/repoaccess"
	"github.com/ferry-backup/ferry/internal/repository"
)

// Leader election creates the Lease leaderElectionID and then only reads and renews it (client-go's
// LeaseLock: get, create, update); its Events go to the install namespace, as all of the server's.
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=create,namespace=velero
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;update,resourceNames=ferry-server.velero.io,namespace=velero
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch,namespace=velero

// leaderElectionID names the Lease of the active server (and the resourceNames above).
const leaderElectionID = "ferry-server.velero.io"

// Options configure ferry-server.
type Options struct {
	manager.Options
	// LeaderElect runs one active server among replicas.
	LeaderElect bool
	// WorkDir holds repository connections and caches.
	WorkDir string
	// BackupSyncPeriod is how often backup records are read back from locations that do not
	// set spec.backupSyncPeriod; 0 disables it.
	BackupSyncPeriod time.Duration
	// Deployment names the server's own Deployment, whose pod maintenance and verification Jobs copy.
	Deployment string
}

// NewOptions returns the defaults.
func NewOptions() Options {
	return Options{Options: manager.NewOptions(":8085", ":8081"), LeaderElect: true,
		WorkDir: filepath.Join(os.TempDir(), "ferry-server"), BackupSyncPeriod: backupsync.DefaultPeriod, Deployment: "ferry-server"}
}

// AddFlags registers the server's flags.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	o.Options.AddFlags(fs)
	fs.BoolVar(&o.LeaderElect, "leader-elect", o.LeaderElect, "elect one active server among replicas through a Lease")
	fs.StringVar(&o.WorkDir, "work-dir", o.WorkDir, "directory for repository connections and caches")
	fs.DurationVar(&o.BackupSyncPeriod, "backup-sync-period", o.BackupSyncPeriod,
		"how often Backups are synced from the backup records in each storage location without spec.backupSyncPeriod; 0 disables it")
	fs.StringVar(&o.Deployment, "deployment", o.Deployment,
		"the server's own Deployment in --namespace: repository maintenance and backup verification Jobs run its image, service account and volumes")
}

// Validate reports invalid settings, naming their flags.
func (o *Options) Validate() error {
	var errs []error
	if !filepath.IsAbs(o.WorkDir) {
		errs = append(errs, fmt.Errorf("--work-dir %q must be an absolute directory", o.WorkDir))
	}
	if o.BackupSyncPeriod < 0 {
		errs = append(errs, fmt.Errorf("--backup-sync-period %s must not be negative (0 disables sync)", o.BackupSyncPeriod))
	}
	return errors.Join(append(errs, o.Options.Validate())...)
}

// Identity is the server's client identity in repositories.
var Identity = repository.Identity{Hostname: "ferry", Username: "server"}

// Run serves until ctx ends.
func Run(ctx context.Context, o Options) error {
	// Ferry's objects and the ConfigMap live in the install namespace; pods, claims and
	// namespaces elsewhere are read directly when a backup or restore starts, never watched.
	extra := manager.Extra{Cache: cache.Options{DefaultNamespaces: map[string]cache.Config{o.Namespace: {}}}}
	if o.LeaderElect {
		extra.LeaderElectionID = leaderElectionID
	}
	mgr, err := manager.New(o.Options, extra)
	if err != nil {
		return err
	}
	recorder := mgr.GetEventRecorderFor("ferry-server")
	config := &nodeagentconfig.Reconciler{Client: mgr.GetClient(), Recorder: recorder, Namespace: o.Namespace}
	access := repoaccess.New(repoaccess.Options{
		Client: mgr.GetAPIReader(), Namespace: o.Namespace, WorkDir: o.WorkDir, Identity: Identity, Create: true,
		CredentialsFile: o.CredentialsFile, LockCheckTimeout: func() time.Duration { return config.Current().BackupRepositoryLockCheckTimeout },
	})
	defer access.Close(context.WithoutCancel(ctx))
	clk := clock.RealClock{}
	controllers := map[string]interface{ SetupWithManager(ctrl.Manager) error }{
		"node-agent config":     config,
		"BackupStorageLocation": &backupstoragelocation.Reconciler{Client: mgr.GetClient(), Clock: clk, Repositories: access},
		"BackupRepository": &backuprepository.Reconciler{Client: mgr.GetClient(), Clock: clk, Repositories: access, Config: config.Current,
			Pods: mgr.GetAPIReader(), ServerDeployment: o.Deployment},
		"Backup":              &backup.Reconciler{Client: mgr.GetClient(), Cluster: mgr.GetAPIReader(), Recorder: recorder, Clock: clk, Repositories: access},
		"repository password": &repositorypassword.Reconciler{Client: mgr.GetClient(), Recorder: recorder, Namespace: o.Namespace, Repositories: access},
		"DeleteBackupRequest": &deletebackuprequest.Reconciler{Client: mgr.GetClient(), Recorder: recorder, Clock: clk, Repositories: access},
		"backup sync":         &backupsync.Reconciler{Client: mgr.GetClient(), Recorder: recorder, Repositories: access, Period: o.BackupSyncPeriod},
		"Restore":             &restore.Reconciler{Client: mgr.GetClient(), Cluster: mgr.GetAPIReader(), Recorder: recorder, Clock: clk, Repositories: access},
		"Schedule":            &schedule.Reconciler{Client: mgr.GetClient(), Recorder: recorder, Clock: clk},
		"backup verification": &backupverification.Reconciler{Client: mgr.GetClient(), Recorder: recorder, Clock: clk, Config: config.Current,
			Pods: mgr.GetAPIReader(), ServerDeployment: o.Deployment},
		"verification schedule": &backupverification.Scheduler{Client: mgr.GetClient(), Clock: clk},
	}
	for _, obj := range []client.Object{&velerov1.PodVolumeBackup{}, &velerov1.PodVolumeRestore{}, &velerov2alpha1.DataUpload{}, &velerov2alpha1.DataDownload{}} {
		controllers[fmt.Sprintf("%T deadline", obj)] = &operationdeadline.Reconciler{Client: mgr.GetClient(), Recorder: recorder, Clock: clk, Object: obj}
	}
	for name, c := range controllers {
		if err := c.SetupWithManager(mgr); err != nil {
			return fmt.Errorf("set up the %s controller: %w", name, err)
		}
	}
	return mgr.Start(ctx)
}
