package e2e

import (
	"context"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/ferry-backup/ferry/api/shared"
	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/controller/backup"
	"github.com/ferry-backup/ferry/internal/exposer"
	"github.com/ferry-backup/ferry/internal/nodeconfig"
)

// Leftovers lists what data movements may leave behind, in the install namespace and cluster-wide:
// mover pods, claims, snapshots and contents, and volumes still marked as a movement's. Empty
// when every movement cleaned up after itself.
func (c *Cluster) Leftovers(ctx context.Context, appNamespace string) (string, error) {
	var found []string
	marked := client.HasLabels{exposer.LabelOperation}
	pods, pvcs, pvs := &corev1.PodList{}, &corev1.PersistentVolumeClaimList{}, &corev1.PersistentVolumeList{}
	snaps, appSnaps, contents := &snapshotv1.VolumeSnapshotList{}, &snapshotv1.VolumeSnapshotList{}, &snapshotv1.VolumeSnapshotContentList{}
	for _, l := range []struct {
		list client.ObjectList
		opts []client.ListOption
	}{
		{pods, []client.ListOption{client.InNamespace(InstallNamespace)}},
		{pvcs, []client.ListOption{client.InNamespace(InstallNamespace)}},
		{snaps, []client.ListOption{client.InNamespace(InstallNamespace)}},
		{appSnaps, []client.ListOption{client.InNamespace(appNamespace)}},
		{contents, nil},
		{pvs, []client.ListOption{marked}},
	} {
		if err := c.Client.List(ctx, l.list, l.opts...); err != nil {
			return "", err
		}
	}
	for _, p := range pods.Items {
		if _, ok := p.Labels[exposer.LabelOperation]; ok {
			found = append(found, "pod "+p.Name+" "+string(p.Status.Phase))
		}
	}
	for _, p := range pvcs.Items {
		found = append(found, "claim "+InstallNamespace+"/"+p.Name+" "+string(p.Status.Phase))
	}
	for _, s := range append(snaps.Items, appSnaps.Items...) {
		found = append(found, "VolumeSnapshot "+s.Namespace+"/"+s.Name)
	}
	for _, s := range contents.Items {
		found = append(found, "VolumeSnapshotContent "+s.Name+" of "+s.Spec.VolumeSnapshotRef.Namespace+"/"+s.Spec.VolumeSnapshotRef.Name)
	}
	for _, p := range pvs.Items {
		found = append(found, "PersistentVolume "+p.Name+" "+string(p.Status.Phase))
	}
	sort.Strings(found)
	return strings.Join(found, "\n"), nil
}

// WaitNoLeftovers waits until data movements left nothing behind (cleanup runs after the
// terminal phase is written).
func (c *Cluster) WaitNoLeftovers(ctx context.Context, appNamespace string, timeout time.Duration) error {
	return c.Poll(ctx, timeout, "data movements to clean up", func() (bool, string, error) {
		left, err := c.Leftovers(ctx, appNamespace)
		return left == "", left, err
	})
}

// WatchKubectl runs `kubectl get ... -w` until stop is called and returns what it printed: what a
// user watching would have seen.
func (c *Cluster) WatchKubectl(ctx context.Context, args ...string) (stop func() string) {
	ctx, cancel := context.WithCancel(ctx)
	cmd := exec.CommandContext(ctx, c.Env["KUBECTL"], append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
	var mu sync.Mutex
	var out strings.Builder
	cmd.Stdout = writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return out.Write(p)
	})
	started := cmd.Start() == nil
	return func() string {
		cancel()
		if started {
			_ = cmd.Wait()
		}
		mu.Lock()
		defer mu.Unlock()
		return out.String()
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// MoverEvents returns "reason: message" of the Events the mover wrote on an operation.
func (c *Cluster) MoverEvents(ctx context.Context, obj client.Object) ([]string, error) {
	evs := &corev1.EventList{}
	if err := c.Client.List(ctx, evs, client.InNamespace(obj.GetNamespace()), client.MatchingLabels{exposer.LabelOperation: string(obj.GetUID())}); err != nil {
		return nil, err
	}
	sort.Slice(evs.Items, func(i, j int) bool { return evs.Items[i].FirstTimestamp.Before(&evs.Items[j].FirstTimestamp) })
	var out []string
	for _, e := range evs.Items {
		out = append(out, e.Reason+": "+e.Message)
	}
	return out, nil
}

// SnapshotClaim takes a VolumeSnapshot of a claim with the cluster's snapshot class, as a Velero
// server does before it creates a DataUpload.
func (c *Cluster) SnapshotClaim(ctx context.Context, ns, claim, name string) (*snapshotv1.VolumeSnapshot, error) {
	class := "csi-hostpath-snapclass"
	vs := &snapshotv1.VolumeSnapshot{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: snapshotv1.VolumeSnapshotSpec{VolumeSnapshotClassName: &class,
			Source: snapshotv1.VolumeSnapshotSource{PersistentVolumeClaimName: &claim}}}
	return vs, c.Client.Create(ctx, vs)
}

// EnsureRepository creates the location's BackupRepository, as ferry-server does for a Backup
// and a Velero server before its DataUploads, and waits until the repository is Ready.
func (c *Cluster) EnsureRepository(ctx context.Context, location string) error {
	br := &velerov1.BackupRepository{ObjectMeta: metav1.ObjectMeta{Namespace: InstallNamespace, Name: backup.RepositoryName(location)},
		Spec: velerov1.BackupRepositorySpec{BackupStorageLocation: location, RepositoryType: velerov1.RepositoryTypeKopia,
			MaintenanceFrequency: shared.Duration{Duration: time.Hour}}}
	if err := c.Client.Create(ctx, br); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return c.Poll(ctx, 2*time.Minute, "BackupRepository "+br.Name+" Ready", func() (bool, string, error) {
		err := c.Client.Get(ctx, client.ObjectKeyFromObject(br), br)
		return err == nil && br.Status.Phase == velerov1.BackupRepositoryPhaseReady, string(br.Status.Phase) + " " + br.Status.Message, err
	})
}

// SetNodeAgentConfig sets one key of the node-agent ConfigMap and waits until the node-agent
// logs the configuration it applied with applied in its podResources (as the agent describes
// them, e.g. "limits.memory=16Mi"); the test's cleanup puts the previous data back and waits
// for the agent to apply that too.
func (c *Cluster) SetNodeAgentConfig(t *testing.T, key, value, applied string) {
	t.Helper()
	ctx := t.Context()
	set := func(ctx context.Context, data map[string]string, want string) error {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: InstallNamespace, Name: nodeconfig.ConfigMapName}}
		since := time.Now().Add(-time.Second).UTC().Format(time.RFC3339)
		if _, err := controllerutil.CreateOrUpdate(ctx, c.Client, cm, func() error { cm.Data = data; return nil }); err != nil {
			return err
		}
		return c.Poll(ctx, time.Minute, "the node-agent to apply podResources "+want, func() (bool, string, error) {
			out, err := c.Kubectl(ctx, "", "logs", "-n", InstallNamespace, "-l", "name=node-agent", "--since-time="+since, "--tail=-1")
			return err == nil && strings.Contains(out, "configuration applied") && strings.Contains(out, want), "", err
		})
	}
	cm := &corev1.ConfigMap{}
	before := map[string]string{}
	if err := c.Client.Get(ctx, client.ObjectKey{Namespace: InstallNamespace, Name: nodeconfig.ConfigMapName}, cm); err == nil {
		before = cm.Data
	}
	data := map[string]string{key: value}
	for k, v := range before {
		if k != key {
			data[k] = v
		}
	}
	if err := set(ctx, data, applied); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := set(context.WithoutCancel(ctx), before, `"podResources":"default"`); err != nil {
			t.Errorf("put the node-agent ConfigMap back: %v", err)
		}
	})
}

// LateBindingClass creates a storage class of the cluster's CSI driver whose volumes are made
// only once a pod uses their claim (WaitForFirstConsumer, as most production classes are), and
// deletes it when the test ends.
func (c *Cluster) LateBindingClass(t *testing.T, name string) string {
	t.Helper()
	ctx := t.Context()
	base := &storagev1.StorageClass{}
	if err := c.Client.Get(ctx, client.ObjectKey{Name: c.Env["CLUSTER_STORAGE_CLASS"]}, base); err != nil {
		t.Fatal(err)
	}
	late := storagev1.VolumeBindingWaitForFirstConsumer
	class := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Provisioner: base.Provisioner,
		ReclaimPolicy: base.ReclaimPolicy, VolumeBindingMode: &late}
	if err := c.Client.Create(ctx, class); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Client.Delete(context.WithoutCancel(ctx), class) })
	return name
}
