package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	velerov2alpha1 "github.com/ferry-backup/ferry/api/v2alpha1"
	"github.com/ferry-backup/ferry/internal/repoaccess"
)

// Kopia runs the kopia CLI (bin) against the location's repository, as an operator would check
// it: its own config and cache under dir, the password read from the cluster's Secret.
type Kopia struct {
	bin, dir, password string
}

// NewKopia connects the kopia CLI at bin to the stories' location.
func (c *Cluster) NewKopia(ctx context.Context, bin, dir string) (*Kopia, error) {
	password, err := c.password(ctx, InstallNamespace)
	if err != nil {
		return nil, err
	}
	return c.KopiaAt(ctx, bin, dir, password, "connect", "ferry/")
}

// NewVeleroKopia creates with the kopia CLI at bin the repository Velero's node-agent creates
// for the volumes of namespace ns at the stories' location, <prefix>/kopia/<ns>/ with Kopia's
// default formats, and stays connected to it as Velero's agents are: as default@default.
func (c *Cluster) NewVeleroKopia(ctx context.Context, bin, dir, ns string) (*Kopia, error) {
	password, err := c.password(ctx, InstallNamespace)
	if err != nil {
		return nil, err
	}
	return c.KopiaAt(ctx, bin, dir, password, "create", "ferry/kopia/"+ns+"/", "--override-hostname", "default", "--override-username", "default")
}

// password returns the repository password of the installation in namespace ns.
func (c *Cluster) password(ctx context.Context, ns string) (string, error) {
	s := &corev1.Secret{}
	if err := c.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: repoaccess.PasswordSecret}, s); err != nil {
		return "", fmt.Errorf("the repository password Secret: %w", err)
	}
	return string(s.Data[repoaccess.PasswordKey]), nil
}

// KopiaAt runs `kopia repository <verb> s3` (create or connect) for the repository at prefix of
// the stories' bucket, with password and the extra flags.
func (c *Cluster) KopiaAt(ctx context.Context, bin, dir, password, verb, prefix string, extra ...string) (*Kopia, error) {
	k := &Kopia{bin: bin, dir: dir, password: password}
	args := append([]string{"repository", verb, "s3", "--bucket", Bucket, "--prefix", prefix,
		"--endpoint", strings.TrimPrefix(c.Env["CLUSTER_S3_URL"], "http://"), "--disable-tls", "--region", c.Env["CLUSTER_S3_REGION"],
		"--access-key", c.Env["CLUSTER_S3_ACCESS_KEY"], "--secret-access-key", c.Env["CLUSTER_S3_SECRET_KEY"]}, extra...)
	_, err := k.run(ctx, args...)
	return k, err
}

func (k *Kopia) run(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, k.bin, append(args, "--config-file", filepath.Join(k.dir, "kopia.config"))...)
	cmd.Env = append(os.Environ(), "KOPIA_PASSWORD="+k.password, "KOPIA_CHECK_FOR_UPDATES=false",
		"KOPIA_CACHE_DIRECTORY="+filepath.Join(k.dir, "cache"), "KOPIA_LOG_DIR="+filepath.Join(k.dir, "logs"))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("kopia %s: %w\n%s", strings.Join(args[:2], " "), err, stderr.String())
	}
	return out, nil
}

// KopiaSnapshot is a snapshot as `kopia snapshot list --json` describes it.
type KopiaSnapshot struct {
	ID     string `json:"id"`
	Source struct {
		Host     string `json:"host"`
		UserName string `json:"userName"`
		Path     string `json:"path"`
	} `json:"source"`
	Tags  map[string]string `json:"tags"`
	Stats struct {
		TotalSize int64 `json:"totalSize"`
		// CachedFiles were taken from the parent snapshot without being read again,
		// NonCachedFiles were read.
		CachedFiles    int `json:"cachedFiles"`
		NonCachedFiles int `json:"nonCachedFiles"`
	} `json:"stats"`
}

// List returns every snapshot in the repository, checkpoints included.
func (k *Kopia) List(ctx context.Context) ([]KopiaSnapshot, error) {
	out, err := k.run(ctx, "snapshot", "list", "--all", "--incomplete", "--json")
	if err != nil {
		return nil, err
	}
	var listed []KopiaSnapshot
	if err := json.Unmarshal(out, &listed); err != nil {
		return nil, fmt.Errorf("kopia snapshot list: %w", err)
	}
	return listed, nil
}

// Snapshots returns the IDs of every snapshot in the repository, checkpoints included.
func (k *Kopia) Snapshots(ctx context.Context) (map[string]bool, error) {
	listed, err := k.List(ctx)
	ids := map[string]bool{}
	for _, s := range listed {
		ids[s.ID] = true
	}
	return ids, err
}

// SnapshotDir snapshots the local directory dir as source (user@host:path) and returns the
// snapshot's ID. (Tags given to the kopia CLI are stored as "tag:<name>", not as Velero's
// uploader stores them, so none are given.)
func (k *Kopia) SnapshotDir(ctx context.Context, dir, source string) (string, error) {
	args := []string{"snapshot", "create", dir, "--override-source", source, "--description", "Kopia Uploader", "--json"}
	out, err := k.run(ctx, args...)
	if err != nil {
		return "", err
	}
	var made KopiaSnapshot
	if err := json.Unmarshal(out, &made); err != nil || made.ID == "" {
		return "", fmt.Errorf("kopia snapshot create printed %q: %v", out, err)
	}
	return made.ID, nil
}

// Restore restores the snapshot id into the local directory target.
func (k *Kopia) Restore(ctx context.Context, id, target string) error {
	_, err := k.run(ctx, "snapshot", "restore", id, target)
	return err
}

// SnapshotIDs returns the snapshot IDs of a backup's PodVolumeBackups.
func (c *Cluster) SnapshotIDs(ctx context.Context, backup string) ([]string, error) {
	pvbs, err := c.PodVolumeBackups(ctx, backup)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, p := range pvbs {
		if p.Status.SnapshotID == "" {
			return nil, fmt.Errorf("PodVolumeBackup %s has no snapshot (%s)", p.Name, p.Status.Phase)
		}
		ids = append(ids, p.Status.SnapshotID)
	}
	return ids, nil
}

// DeleteBackup asks for a backup's deletion as a Velero user's tooling does, with a
// DeleteBackupRequest made by kubectl, and returns the request once Processed.
func (c *Cluster) DeleteBackup(ctx context.Context, backup string, timeout time.Duration) (*velerov1.DeleteBackupRequest, error) {
	manifest := fmt.Sprintf("apiVersion: velero.io/v1\nkind: DeleteBackupRequest\nmetadata:\n  name: %s-delete\n  namespace: %s\nspec:\n  backupName: %s\n",
		backup, InstallNamespace, backup)
	if _, err := c.Kubectl(ctx, manifest, "create", "-f", "-"); err != nil {
		return nil, err
	}
	dbr := &velerov1.DeleteBackupRequest{}
	key := client.ObjectKey{Namespace: InstallNamespace, Name: backup + "-delete"}
	err := c.Poll(ctx, timeout, "DeleteBackupRequest "+key.Name+" Processed", func() (bool, string, error) {
		if err := c.Client.Get(ctx, key, dbr); err != nil {
			return false, "", err
		}
		return dbr.Status.Phase == velerov1.DeleteBackupRequestPhaseProcessed, string(dbr.Status.Phase), nil
	})
	return dbr, err
}

// FerryPods describes Ferry's long-running pods (name, UID, restarts), to tell that none was
// replaced or restarted during a story; the pods of maintenance Jobs and data movements, which
// come and go, are left out.
func (c *Cluster) FerryPods(ctx context.Context) (string, error) {
	pods := &corev1.PodList{}
	if err := c.Client.List(ctx, pods, client.InNamespace(InstallNamespace)); err != nil {
		return "", err
	}
	var lines []string
	for _, p := range pods.Items {
		if name := p.Labels["app.kubernetes.io/name"]; name != "ferry-server" && name != "ferry-node-agent" {
			continue
		}
		restarts := int32(0)
		for _, s := range p.Status.ContainerStatuses {
			restarts += s.RestartCount
		}
		lines = append(lines, fmt.Sprintf("%s uid=%s restarts=%d", p.Name, p.UID, restarts))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n"), nil
}

// StoredObjects returns the names and sizes of every object of the stories' bucket, to tell
// that nothing was deleted from it.
func (c *Cluster) StoredObjects(ctx context.Context) (map[string]int64, error) {
	s3, err := c.s3()
	if err != nil {
		return nil, err
	}
	objects := map[string]int64{}
	for o := range s3.ListObjects(ctx, Bucket, minio.ListObjectsOptions{Recursive: true}) {
		if o.Err != nil {
			return nil, o.Err
		}
		objects[o.Key] = o.Size
	}
	return objects, nil
}

// Missing lists the objects of before that after lacks.
func Missing(before, after map[string]int64) []string {
	var gone []string
	for k := range before {
		if _, ok := after[k]; !ok {
			gone = append(gone, k)
		}
	}
	sort.Strings(gone)
	return gone
}

// WaitVolume waits until a PodVolumeBackup, PodVolumeRestore, DataUpload or DataDownload has
// ended (Completed, Failed or Canceled), reading it into obj.
func (c *Cluster) WaitVolume(ctx context.Context, obj client.Object, timeout time.Duration) error {
	return c.Poll(ctx, timeout, fmt.Sprintf("%T %s to end", obj, obj.GetName()), func() (bool, string, error) {
		if err := c.Client.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
			return false, "", err
		}
		var phase, message string
		switch o := obj.(type) {
		case *velerov1.PodVolumeBackup:
			phase, message = string(o.Status.Phase), o.Status.Message
		case *velerov1.PodVolumeRestore:
			phase, message = string(o.Status.Phase), o.Status.Message
		case *velerov2alpha1.DataUpload:
			phase, message = string(o.Status.Phase), o.Status.Message
		case *velerov2alpha1.DataDownload:
			phase, message = string(o.Status.Phase), o.Status.Message
		}
		// The data mover's phases have the same names.
		return velerov1.PodVolumePhase(phase).Terminal(), phase + " " + message, nil
	})
}
