package e2e

import (
	"cmp"
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
)

// App is an application namespace made from manifests: a StatefulSet "shop" (a CSI volume from
// its claim template and an emptyDir) and a Deployment "web" (a standalone CSI claim). Deleting
// the namespace and applying the same manifests again gives fresh pods with empty volumes.
type App struct {
	c         *Cluster
	Namespace string
	// Volumes are the pods' data directories by pod label app=NAME: what a backup must carry.
	Volumes []AppVolume
	// ClaimSize is the size of each PVC.
	ClaimSize string
	// WebClass is the storage class of the web-content claim; empty: the cluster's class.
	WebClass string
}

// AppVolume is one volume of the application, seen from inside its pod.
type AppVolume struct {
	App, Dir string
}

// NewApp describes the application in namespace ns.
func (c *Cluster) NewApp(ns string) *App {
	return &App{c: c, Namespace: ns, ClaimSize: "2Gi", Volumes: []AppVolume{
		{App: "shop", Dir: "/data"}, {App: "shop", Dir: "/cache"}, {App: "web", Dir: "/content"}}}
}

// Manifests are the application's objects, as a user keeps them in git.
func (a *App) Manifests() string {
	return fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata: {name: %[1]s}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: shop, namespace: %[1]s}
spec:
  serviceName: shop
  replicas: 1
  selector: {matchLabels: {app: shop}}
  template:
    metadata: {labels: {app: shop}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: shop
        image: %[2]s
        imagePullPolicy: Never
        command: [/bin/sh, -c, "trap 'exit 0' TERM; while true; do sleep 1; done"]
        volumeMounts: [{name: data, mountPath: /data}, {name: cache, mountPath: /cache}]
      volumes: [{name: cache, emptyDir: {}}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec: {accessModes: [ReadWriteOnce], storageClassName: %[3]s, resources: {requests: {storage: %[4]s}}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: web-content, namespace: %[1]s}
spec: {accessModes: [ReadWriteOnce], storageClassName: %[5]s, resources: {requests: {storage: %[4]s}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: %[1]s}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: %[2]s
        imagePullPolicy: Never
        command: [/bin/sh, -c, "trap 'exit 0' TERM; while true; do sleep 1; done"]
        volumeMounts: [{name: content, mountPath: /content}]
      volumes: [{name: content, persistentVolumeClaim: {claimName: web-content}}]
`, a.Namespace, a.c.Env["CLUSTER_TOOLS_IMAGE"], a.c.Env["CLUSTER_STORAGE_CLASS"], a.ClaimSize, cmp.Or(a.WebClass, a.c.Env["CLUSTER_STORAGE_CLASS"]))
}

// Deploy applies the manifests and waits until both pods run.
func (a *App) Deploy(ctx context.Context) error {
	if _, err := a.c.Kubectl(ctx, a.Manifests(), "apply", "-f", "-"); err != nil {
		return err
	}
	for _, app := range []string{"shop", "web"} {
		if _, err := a.Pod(ctx, app); err != nil {
			return err
		}
	}
	return nil
}

// Pod returns the name of the running, ready pod labelled app=name.
//
// Up to 6 minutes, not 2: kube-scheduler (v1.34) can park a StatefulSet's pod as unschedulable
// ("pod has unbound immediate PersistentVolumeClaims. not found": the claim the StatefulSet
// controller had just created was not in its cache yet) and then miss the claim's binding, so the
// pod waits for the scheduling queue's 5-minute flush of unschedulable pods (seen once, in a
// data mover story; kubernetes/kubernetes#125762 reports the like).
func (a *App) Pod(ctx context.Context, app string) (string, error) {
	var name string
	err := a.c.Poll(ctx, 6*time.Minute, "a running pod app="+app+" in "+a.Namespace, func() (bool, string, error) {
		pods := &corev1.PodList{}
		if err := a.c.Client.List(ctx, pods, client.InNamespace(a.Namespace), client.MatchingLabels{"app": app}); err != nil {
			return false, "", err
		}
		var states []string
		for _, p := range pods.Items {
			states = append(states, p.Name+" "+string(p.Status.Phase))
			if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning && ready(&p) {
				name = p.Name
				return true, "", nil
			}
		}
		return false, strings.Join(states, ", "), nil
	})
	return name, err
}

func ready(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// Delete deletes the application's namespace and waits until it is gone, claims and volumes
// with it.
func (a *App) Delete(ctx context.Context) error {
	if err := a.c.Client.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: a.Namespace}}); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	return a.c.Poll(ctx, 3*time.Minute, "namespace "+a.Namespace+" deleted", func() (bool, string, error) {
		err := a.c.Client.Get(ctx, client.ObjectKey{Name: a.Namespace}, &corev1.Namespace{})
		if apierrors.IsNotFound(err) {
			return true, "", nil
		}
		return false, "still terminating", err
	})
}

// Discard deletes the application's namespace without waiting (a story's cleanup: the next
// story uses a namespace of its own, and down.sh removes whatever is left).
func (a *App) Discard() {
	_ = a.c.Client.Delete(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: a.Namespace}})
}

// Fill writes files into every volume of the application from inside its pods: smallFiles
// small files in nested directories, one large file per entry of bigMiB, symlinks (relative,
// absolute, to a directory), an empty file, an empty directory and unusual modes. The content
// comes from /dev/urandom, so every run backs up new data.
func (a *App) Fill(ctx context.Context, smallFiles int, bigMiB ...int) error {
	for _, v := range a.Volumes {
		pod, err := a.Pod(ctx, v.App)
		if err != nil {
			return err
		}
		script := fmt.Sprintf(`set -e; cd %s
i=0; while [ $i -lt %d ]; do d=small/d$((i %% 7))/e$((i %% 3)); mkdir -p $d; head -c $(( (i * 7919) %% 6000 + 1 )) /dev/urandom > $d/f$i; i=$((i+1)); done
`, v.Dir, smallFiles)
		for i, mib := range bigMiB {
			script += fmt.Sprintf("dd if=/dev/urandom of=big%d bs=1M count=%d 2>/dev/null\n", i, mib)
		}
		script += `mkdir -p nested/deep/er emptydir; : > empty; echo hello > nested/deep/er/hello.txt
ln -sfn nested/deep/er/hello.txt link-to-file; ln -sfn ../small nested/link-to-dir; ln -sfn /etc/hostname absolute-link
chmod 0600 nested/deep/er/hello.txt; chmod 0750 nested; chmod 0444 empty; sync`
		if _, err := a.c.Exec(ctx, a.Namespace, pod, script); err != nil {
			return fmt.Errorf("fill %s:%s: %w", pod, v.Dir, err)
		}
	}
	return nil
}

// describeScript prints one line per entry below the current directory: type, path, mode, and
// for files size, modification time and MD5; for symlinks the target. The .velero directory, where
// a restore through Velero's server leaves its done-mark for the restore-wait init container, is
// not the application's data.
const describeScript = `find . -mindepth 1 -path ./.velero -prune -o -print | sort | while IFS= read -r f; do
  if [ -L "$f" ]; then echo "L $f -> $(readlink "$f")"
  elif [ -d "$f" ]; then echo "D $f $(stat -c %a "$f")"
  else echo "F $f $(stat -c '%a %s %Y' "$f") $(md5sum < "$f" | cut -d' ' -f1)"; fi
done`

// Describe returns, per volume, the listing of every file with its checksum, computed by the
// application's own pods.
func (a *App) Describe(ctx context.Context) (map[AppVolume]string, error) {
	out := map[AppVolume]string{}
	for _, v := range a.Volumes {
		pod, err := a.Pod(ctx, v.App)
		if err != nil {
			return nil, err
		}
		listing, err := a.c.Exec(ctx, a.Namespace, pod, "cd "+v.Dir+" && "+describeScript)
		if err != nil {
			return nil, err
		}
		out[v] = listing
	}
	return out, nil
}

// Compare returns what differs between two descriptions, or "" when they are the same.
func Compare(want, got map[AppVolume]string) string {
	var b strings.Builder
	for v, w := range want {
		g := got[v]
		if g == w {
			continue
		}
		wl, gl := strings.Split(w, "\n"), strings.Split(g, "\n")
		fmt.Fprintf(&b, "%s:%s: %d entries backed up, %d restored\n", v.App, v.Dir, len(wl), len(gl))
		seen := map[string]bool{}
		for _, l := range gl {
			seen[l] = true
		}
		n := 0
		for _, l := range wl {
			if !seen[l] && n < 10 {
				fmt.Fprintf(&b, "  missing or different: %s\n", l)
				n++
			}
		}
	}
	return b.String()
}

// Count returns the number of files and bytes in a description.
func Count(desc map[AppVolume]string) (files, bytes int64) {
	for _, listing := range desc {
		for _, l := range strings.Split(listing, "\n") {
			// F <path> <mode> <size> <mtime> <md5>
			if f := strings.Fields(l); len(f) == 6 && f[0] == "F" {
				var size int64
				_, _ = fmt.Sscan(f[3], &size)
				files++
				bytes += size
			}
		}
	}
	return files, bytes
}

// Backup creates a file-system Backup of the namespaces and returns it.
func (c *Cluster) Backup(ctx context.Context, name string, mutate func(*velerov1.Backup), namespaces ...string) (*velerov1.Backup, error) {
	yes := true
	b := &velerov1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: InstallNamespace, Name: name},
		Spec: velerov1.BackupSpec{IncludedNamespaces: namespaces, DefaultVolumesToFsBackup: &yes}}
	if mutate != nil {
		mutate(b)
	}
	return b, c.Client.Create(ctx, b)
}

// Restore creates a Restore of a backup and returns it.
func (c *Cluster) Restore(ctx context.Context, name, backup string) (*velerov1.Restore, error) {
	r := &velerov1.Restore{ObjectMeta: metav1.ObjectMeta{Namespace: InstallNamespace, Name: name},
		Spec: velerov1.RestoreSpec{BackupName: backup}}
	return r, c.Client.Create(ctx, r)
}

// BackupEnded reads the backup and tells whether it has ended.
func (c *Cluster) BackupEnded(ctx context.Context, b *velerov1.Backup) (bool, string, error) {
	if err := c.Client.Get(ctx, client.ObjectKeyFromObject(b), b); err != nil {
		return false, "", err
	}
	switch b.Status.Phase {
	case "", velerov1.BackupPhaseNew, velerov1.BackupPhaseInProgress:
		return false, fmt.Sprintf("phase %q", b.Status.Phase), nil
	}
	return true, "", nil
}

// RestoreEnded reads the restore and tells whether it has ended.
func (c *Cluster) RestoreEnded(ctx context.Context, r *velerov1.Restore) (bool, string, error) {
	if err := c.Client.Get(ctx, client.ObjectKeyFromObject(r), r); err != nil {
		return false, "", err
	}
	switch r.Status.Phase {
	case "", velerov1.RestorePhaseNew, velerov1.RestorePhaseInProgress:
		return false, fmt.Sprintf("phase %q", r.Status.Phase), nil
	}
	return true, "", nil
}

// WaitBackup waits until the backup has ended.
func (c *Cluster) WaitBackup(ctx context.Context, b *velerov1.Backup, timeout time.Duration) error {
	return c.Poll(ctx, timeout, "backup "+b.Name+" to end", func() (bool, string, error) { return c.BackupEnded(ctx, b) })
}

// WaitRestore waits until the restore has ended.
func (c *Cluster) WaitRestore(ctx context.Context, r *velerov1.Restore, timeout time.Duration) error {
	return c.Poll(ctx, timeout, "restore "+r.Name+" to end", func() (bool, string, error) { return c.RestoreEnded(ctx, r) })
}

// PodVolumeBackups returns the PodVolumeBackups of a backup.
func (c *Cluster) PodVolumeBackups(ctx context.Context, backup string) ([]velerov1.PodVolumeBackup, error) {
	list := &velerov1.PodVolumeBackupList{}
	err := c.Client.List(ctx, list, client.InNamespace(InstallNamespace), client.MatchingLabels{velerov1.LabelBackupName: backup})
	return list.Items, err
}

// PodVolumeRestores returns the PodVolumeRestores of a restore.
func (c *Cluster) PodVolumeRestores(ctx context.Context, restore string) ([]velerov1.PodVolumeRestore, error) {
	list := &velerov1.PodVolumeRestoreList{}
	err := c.Client.List(ctx, list, client.InNamespace(InstallNamespace), client.MatchingLabels{"velero.io/restore-name": restore})
	return list.Items, err
}
