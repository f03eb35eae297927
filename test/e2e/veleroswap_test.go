package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	velerov2alpha1 "github.com/ferry-backup/ferry/api/v2alpha1"
	"github.com/ferry-backup/ferry/internal/repository/repotest"
)

// TestVelerosServerWithFerrysNodeAgentAndBackOnTheRealCluster is the swap docs/node-agent.md
// describes, as a Velero user lives it: Velero v1.18 installed by `velero install` (its own
// images, built offline by hack/cluster/velero-images.sh; its CRDs; its node-agent), backups and
// restores made with Velero's CLI through Velero's server, and the node-agent swapped under it:
//   - Velero's agent backs up an application (file-system backup);
//   - `ferry install --in-place-of-velero` puts Ferry's node-agent into Velero's DaemonSet;
//     Ferry's agent restores Velero's backup, backs up incrementally from Velero's snapshots
//     (no file read again), backs up new data, and moves the data of `--snapshot-move-data`
//     backups, both those handed to it (`--data-mover ferry`, restored too) and those left to
//     Velero's own data mover;
//   - `ferry uninstall` puts Velero's agent back; it restores Ferry's backup, backs up
//     incrementally from Ferry's snapshots, and moves data from Ferry's data-mover snapshot as
//     parent.
//
// Every restore is compared file by file (content, size, mode, modification time, symlinks)
// with the application. The figures of each operation, Velero's agent beside Ferry's on the same
// data, are logged as a table.
//
// It changes the cluster's CRDs while it runs and puts Ferry's back at the end; it is the last
// story of the tier (file order).
func TestVelerosServerWithFerrysNodeAgentAndBackOnTheRealCluster(t *testing.T) {
	c, ns := story(t, "velero")
	ctx := t.Context()
	v := installVelero(t, c, ns+"-velero")
	server := &appsv1.Deployment{}
	must(t, c.Client.Get(ctx, client.ObjectKey{Namespace: v.ns, Name: "velero"}, server))
	agent := &appsv1.DaemonSet{}
	must(t, c.Client.Get(ctx, client.ObjectKey{Namespace: v.ns, Name: "node-agent"}, agent))

	app := c.NewApp(ns)
	t.Cleanup(app.Discard)
	must(t, app.Deploy(ctx))
	must(t, app.Fill(ctx, 200, 32))
	first, err := app.Describe(ctx)
	must(t, err)
	files, bytes := Count(first)
	t.Logf("application %s: %d files, %d bytes in %d volumes", ns, files, bytes, len(first))
	fs := []string{"--include-namespaces", ns, "--default-volumes-to-fs-backup"}
	moved := []string{"--include-namespaces", ns, "--snapshot-move-data"}
	// A data-mover backup carries the claims only; the emptyDir stays behind.
	claims := []AppVolume{{App: "shop", Dir: "/data"}, {App: "web", Dir: "/content"}}

	// Velero's agent backs up.
	v.backup(t, "fs-velero", "Velero", "new data", fs...)

	// The swap, as docs/node-agent.md writes it.
	out, err := c.Ferry(ctx, "install", "--in-place-of-velero", "-n", v.ns, "--image", c.Image, "--image-pull-policy", "Never")
	must(t, err)
	t.Logf("ferry install --in-place-of-velero:\n%s", indent(out))
	pods, err := c.Kubectl(ctx, "", "get", "pods", "-n", v.ns, "-l", "name=node-agent",
		"-o", "jsonpath={range .items[*]}{.metadata.name} {.spec.containers[0].image} {.status.phase}{'\\n'}{end}")
	must(t, err)
	if !strings.Contains(pods, c.Image+" Running") {
		t.Fatalf("no node-agent pod runs Ferry's image %s in %s:\n%s", c.Image, v.ns, pods)
	}

	// Ferry's agent restores Velero's backup, and backs up from Velero's snapshots as parents.
	v.restore(t, "fs-velero-by-ferry", "fs-velero", "Ferry", ns, ns+"-r1", first, app.Volumes)
	v.backup(t, "fs-ferry-incremental", "Ferry", "no change", fs...)
	v.readNothingAgain(t, "fs-ferry-incremental", "Ferry's agent after Velero's")
	must(t, app.Fill(ctx, 200, 32))
	second, err := app.Describe(ctx)
	must(t, err)
	v.backup(t, "fs-ferry", "Ferry", "new data", fs...)

	// Data movement through Velero's server: handed to Ferry, and left to Velero's own mover,
	// which is Ferry's now.
	v.backup(t, "moved-ferry", "Ferry", "data mover, --data-mover ferry", append(moved, "--data-mover", "ferry")...)
	v.restore(t, "moved-ferry", "moved-ferry", "Ferry", ns, ns+"-r2", second, claims)
	v.backup(t, "moved-default", "Ferry", "data mover, Velero's default", moved...)
	for _, du := range v.dataUploads(t, "moved-default") {
		if du.Spec.DataMover != "" && du.Spec.DataMover != "velero" {
			t.Errorf("DataUpload %s of a backup without --data-mover names data mover %q", du.Name, du.Spec.DataMover)
		}
	}

	// And back.
	out, err = c.Ferry(ctx, "uninstall", "-n", v.ns)
	must(t, err)
	t.Logf("ferry uninstall:\n%s", indent(out))
	back := &appsv1.DaemonSet{}
	must(t, c.Client.Get(ctx, client.ObjectKeyFromObject(agent), back))
	if img, want := back.Spec.Template.Spec.Containers[0].Image, agent.Spec.Template.Spec.Containers[0].Image; img != want ||
		back.Spec.Template.Spec.ServiceAccountName != agent.Spec.Template.Spec.ServiceAccountName {
		t.Errorf("after uninstall the DaemonSet runs %s as %s, not Velero's node-agent (%s)", img, back.Spec.Template.Spec.ServiceAccountName, want)
	}
	if err := c.Client.Get(ctx, client.ObjectKey{Namespace: v.ns, Name: "ferry-node-agent"}, &corev1.ServiceAccount{}); !apierrors.IsNotFound(err) {
		t.Errorf("Ferry's node-agent ServiceAccount after uninstall: %v", err)
	}
	d := &appsv1.Deployment{}
	must(t, c.Client.Get(ctx, client.ObjectKeyFromObject(server), d))
	if d.Generation != server.Generation {
		t.Errorf("Velero's server Deployment was changed by the swap (generation %d, was %d)", d.Generation, server.Generation)
	}
	crd := &apiextensionsv1.CustomResourceDefinition{}
	must(t, c.Client.Get(ctx, client.ObjectKey{Name: "podvolumebackups.velero.io"}, crd))
	if sr := crd.Spec.Versions[0].Subresources; sr != nil && sr.Status != nil {
		t.Errorf("Velero's CRDs were changed by the swap: podvolumebackups has a status subresource")
	}

	// Velero's agent restores Ferry's backup and carries on from Ferry's snapshots.
	v.restore(t, "fs-ferry-by-velero", "fs-ferry", "Velero", ns, ns+"-r3", second, app.Volumes)
	v.backup(t, "fs-velero-incremental", "Velero", "no change", fs...)
	v.readNothingAgain(t, "fs-velero-incremental", "Velero's agent after Ferry's")
	v.backup(t, "moved-velero", "Velero", "data mover, Velero's default", moved...)
	v.readNothingAgain(t, "moved-velero", "Velero's data mover after Ferry's")
	v.restore(t, "moved-velero", "moved-velero", "Velero", ns, ns+"-r4", second, claims)

	t.Logf("Velero v1.18 server and CLI; each operation timed from `velero ... --wait` to its end (%d files, %d bytes in %d volumes):\n%s",
		files, bytes, len(first), v.table())
}

// veleroInstallation is Velero installed by `velero install` into namespace ns of the real cluster.
type veleroInstallation struct {
	c       *Cluster
	ns, bin string
	kopia   *Kopia // the kopia CLI on the application namespace's repository, once there is one
	appNS   string
	figures [][]string
}

// installVelero installs Velero into namespace ns as its documentation says, with the images
// hack/cluster/velero-images.sh imported (FERRY_E2E_VELERO_IMAGES) and the binaries of
// hack/install-velero.sh (FERRY_E2E_VELERO), a location in the stories' bucket under prefix ns,
// and the CSI snapshot class labelled for Velero. Velero's CRDs replace Ferry's until the story
// ends (`velero install` keeps CRDs that exist); everything is undone in the test's cleanup.
func installVelero(t *testing.T, c *Cluster, ns string) *veleroInstallation {
	t.Helper()
	ctx := t.Context()
	dir, images := os.Getenv("FERRY_E2E_VELERO"), strings.Fields(os.Getenv("FERRY_E2E_VELERO_IMAGES"))
	if dir == "" || len(images) != 2 {
		t.Fatalf("FERRY_E2E_VELERO (Velero's binaries, hack/install-velero.sh) and FERRY_E2E_VELERO_IMAGES (its two images, " +
			"hack/cluster/velero-images.sh) are not set: run the tier with hack/test-e2e.sh")
	}
	v := &veleroInstallation{c: c, ns: ns, bin: filepath.Join(dir, "velero")}

	// Velero's CRDs, until the story ends; then Ferry's again.
	out, err := v.run(ctx, "install", "--crds-only", "--dry-run", "-o", "json")
	must(t, err)
	var list struct {
		Items []*apiextensionsv1.CustomResourceDefinition `json:"items"`
	}
	must(t, json.Unmarshal([]byte(out), &list))
	if len(list.Items) == 0 {
		t.Fatalf("velero install --crds-only printed no CRD:\n%s", out)
	}
	var created []client.Object
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Minute)
		defer cancel()
		for _, crd := range created {
			if err := c.Client.Delete(ctx, crd); err != nil && !apierrors.IsNotFound(err) {
				t.Errorf("deleting Velero's CRD %s: %v", crd.GetName(), err)
			}
		}
		if _, err := c.Ferry(ctx, "install", "--image", c.Image, "--image-pull-policy", "Never"); err != nil {
			t.Errorf("putting Ferry's CRDs back: %v", err)
		}
	})
	for _, want := range list.Items {
		must(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
			have := &apiextensionsv1.CustomResourceDefinition{}
			err := c.Client.Get(ctx, client.ObjectKeyFromObject(want), have)
			if apierrors.IsNotFound(err) {
				obj := &apiextensionsv1.CustomResourceDefinition{ObjectMeta: metav1.ObjectMeta{Name: want.Name, Labels: want.Labels}, Spec: want.Spec}
				if err := c.Client.Create(ctx, obj); err != nil {
					return err
				}
				created = append(created, obj)
				return nil
			} else if err != nil {
				return err
			}
			have.Spec = want.Spec
			return c.Client.Update(ctx, have)
		}))
	}

	// Velero's snapshot class label, for --snapshot-move-data.
	const class = "csi-hostpath-snapclass"
	_, err = c.Kubectl(ctx, "", "label", "--overwrite", "volumesnapshotclass", class, "velero.io/csi-volumesnapshot-class=true")
	must(t, err)
	t.Cleanup(func() {
		_, _ = c.Kubectl(context.WithoutCancel(ctx), "", "label", "volumesnapshotclass", class, "velero.io/csi-volumesnapshot-class-")
	})

	secretFile := filepath.Join(t.TempDir(), "cloud")
	must(t, os.WriteFile(secretFile, fmt.Appendf(nil, "[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n",
		c.Env["CLUSTER_S3_ACCESS_KEY"], c.Env["CLUSTER_S3_SECRET_KEY"]), 0o600))
	t.Cleanup(func() { v.uninstall(t) })
	start := time.Now()
	installCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	out, err = v.run(installCtx, "install", "--provider", "aws", "--image", images[0], "--plugins", images[1],
		"--bucket", Bucket, "--prefix", ns, "--secret-file", secretFile, "--use-node-agent", "--use-volume-snapshots=false",
		"--backup-location-config", fmt.Sprintf("region=%s,s3ForcePathStyle=true,s3Url=%s", c.Env["CLUSTER_S3_REGION"], c.Env["CLUSTER_S3_URL"]),
		"--features=EnableCSI", "--wait")
	if err != nil {
		t.Fatalf("velero install: %v\n%s", err, c.Diagnose(ctx, ns))
	}
	bsl := &velerov1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default"}}
	must(t, c.Poll(ctx, 2*time.Minute, "Velero's location Available", func() (bool, string, error) {
		err := c.Client.Get(ctx, client.ObjectKeyFromObject(bsl), bsl)
		return err == nil && bsl.Status.Phase == velerov1.BackupStorageLocationPhaseAvailable, string(bsl.Status.Phase), client.IgnoreNotFound(err)
	}))
	t.Logf("velero install (server, node-agent, location Available) took %s", time.Since(start).Round(100*time.Millisecond))
	return v
}

// operationTimeout bounds each `velero ... --wait`: Velero's own timeout for a volume is 4 hours.
const operationTimeout = 5 * time.Minute

// run runs Velero's CLI against the installation.
func (v *veleroInstallation) run(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, v.bin, append(args, "--kubeconfig", v.c.Kubeconfig, "--namespace", v.ns)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("velero %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// uninstall deletes what the installation made: its Restores first, whose finalizer only
// Velero's running server takes off, then its namespace and its ClusterRoleBinding.
func (v *veleroInstallation) uninstall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := v.c
	if _, err := v.run(ctx, "restore", "delete", "--all", "--confirm"); err != nil {
		t.Logf("deleting Velero's restores: %v", err)
	}
	restores := &velerov1.RestoreList{}
	if err := c.Poll(ctx, time.Minute, "Velero's restores deleted", func() (bool, string, error) {
		err := c.Client.List(ctx, restores, client.InNamespace(v.ns))
		return err == nil && len(restores.Items) == 0, fmt.Sprintf("%d left", len(restores.Items)), err
	}); err != nil {
		t.Errorf("%v; their finalizers are taken off", err)
		for i := range restores.Items {
			r := &restores.Items[i]
			r.Finalizers = nil
			_ = c.Client.Update(ctx, r)
		}
	}
	if err := c.Client.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: v.ns}}); err != nil && !apierrors.IsNotFound(err) {
		t.Errorf("deleting Velero's namespace: %v", err)
	}
	bindings := &rbacv1.ClusterRoleBindingList{}
	if err := c.Client.List(ctx, bindings, client.MatchingLabels{"component": "velero"}); err != nil {
		t.Errorf("listing Velero's ClusterRoleBindings: %v", err)
	}
	for i := range bindings.Items {
		b := &bindings.Items[i]
		if slices.ContainsFunc(b.Subjects, func(s rbacv1.Subject) bool { return s.Namespace == v.ns }) {
			if err := c.Client.Delete(ctx, b); err != nil && !apierrors.IsNotFound(err) {
				t.Errorf("deleting Velero's ClusterRoleBinding %s: %v", b.Name, err)
			}
		}
	}
}

// backup runs `velero backup create name args --wait`, requires it Completed, and records the
// figure: which agent, what data, how long.
func (v *veleroInstallation) backup(t *testing.T, name, agent, what string, args ...string) {
	t.Helper()
	b := &velerov1.Backup{}
	took := v.create(t, b, name, agent, func() string { return string(b.Status.Phase) }, string(velerov1.BackupPhaseCompleted), args...)
	if v.appNS == "" {
		v.appNS = b.Spec.IncludedNamespaces[0]
	}
	var volumes []string
	if slices.Contains(args, "--snapshot-move-data") {
		for _, du := range v.dataUploads(t, name) {
			if du.Status.Phase != velerov2alpha1.DataMovePhaseCompleted {
				t.Errorf("DataUpload %s of backup %s: %s %q", du.Name, name, du.Status.Phase, du.Status.Message)
			}
			volumes = append(volumes, fmt.Sprintf("%s %s", du.Spec.SourcePVC, stageTimes(du.Status.StartTimestamp, du.Status.CompletionTimestamp)))
		}
	} else {
		for _, pvb := range v.podVolumeBackups(t, name) {
			volumes = append(volumes, fmt.Sprintf("%s %s, %d B uploaded", pvb.Spec.Volume,
				stageTimes(pvb.Status.StartTimestamp, pvb.Status.CompletionTimestamp), pvb.Status.IncrementalBytes))
		}
	}
	if len(volumes) == 0 {
		t.Fatalf("Velero's backup %s moved no volume", name)
	}
	v.figures = append(v.figures, []string{"backup " + name, agent, what, took.Round(100 * time.Millisecond).String(), strings.Join(volumes, "; ")})
}

// create runs `velero backup|restore create name args --wait` (obj's kind), bounded by
// operationTimeout, reads obj and requires its phase to be want; it returns how long the command
// took. On failure it names what Velero's `describe --details` says.
func (v *veleroInstallation) create(t *testing.T, obj client.Object, name, agent string, phase func() string, want string, args ...string) time.Duration {
	t.Helper()
	ctx := t.Context()
	kind := "backup"
	if _, ok := obj.(*velerov1.Restore); ok {
		kind = "restore"
	}
	wait, cancel := context.WithTimeout(ctx, operationTimeout)
	defer cancel()
	start := time.Now()
	out, err := v.run(wait, append([]string{kind, "create", name, "--wait"}, args...)...)
	took := time.Since(start)
	if err == nil {
		err = v.c.Client.Get(ctx, client.ObjectKey{Namespace: v.ns, Name: name}, obj)
	}
	if err == nil && phase() == want {
		return took
	}
	describe, _ := v.run(ctx, kind, "describe", name, "--details")
	if err != nil {
		t.Fatalf("Velero's %s %s by %s's agent: %v\n%s\n%s", kind, name, agent, err, describe, v.c.Diagnose(ctx, v.ns))
	}
	t.Fatalf("Velero's %s %s by %s's agent ended %s:\n%s\n%s", kind, name, agent, phase(), out, describe)
	return took
}

// restore runs `velero restore create name --from-backup backup --namespace-mappings from:to
// --wait`, requires it Completed, compares the restored volumes with want and records the figure.
func (v *veleroInstallation) restore(t *testing.T, name, backup, agent, from, to string, want map[AppVolume]string, volumes []AppVolume) {
	t.Helper()
	ctx := t.Context()
	restored := v.c.NewApp(to)
	restored.Volumes = volumes
	t.Cleanup(restored.Discard)
	r := &velerov1.Restore{}
	took := v.create(t, r, name, agent, func() string { return string(r.Status.Phase) }, string(velerov1.RestorePhaseCompleted),
		"--from-backup", backup, "--namespace-mappings", from+":"+to)
	got, err := restored.Describe(ctx)
	must(t, err)
	expected := map[AppVolume]string{}
	for _, vol := range volumes {
		expected[vol] = want[vol]
	}
	if diff := Compare(expected, got); diff != "" {
		t.Fatalf("restore %s of %s by %s's agent differs from the application:\n%s", name, backup, agent, diff)
	}
	v.figures = append(v.figures, []string{"restore " + name, agent, fmt.Sprintf("%s, %d volumes", backup, len(volumes)),
		took.Round(100 * time.Millisecond).String(), "byte for byte"})
}

// readNothingAgain requires every file-system snapshot of the backup to have taken every file
// from a parent snapshot (the kopia CLI's cachedFiles and nonCachedFiles, as the agent wrote
// them), that is: the agent found the other agent's snapshot of the volume and read nothing.
func (v *veleroInstallation) readNothingAgain(t *testing.T, backup, who string) {
	t.Helper()
	ctx := t.Context()
	if v.kopia == nil {
		password, err := v.c.password(ctx, v.ns)
		must(t, err)
		v.kopia, err = v.c.KopiaAt(ctx, repotest.Tool(t, "kopia"), t.TempDir(), password, "connect", v.ns+"/kopia/"+v.appNS+"/")
		must(t, err)
	}
	listed, err := v.kopia.List(ctx)
	must(t, err)
	var ids []string
	for _, pvb := range v.podVolumeBackups(t, backup) {
		ids = append(ids, pvb.Status.SnapshotID)
	}
	for _, du := range v.dataUploads(t, backup) {
		ids = append(ids, du.Status.SnapshotID)
	}
	if len(ids) == 0 {
		t.Fatalf("backup %s has no volume snapshot", backup)
	}
	for _, id := range ids {
		i := slices.IndexFunc(listed, func(s KopiaSnapshot) bool { return s.ID == id })
		if i < 0 {
			t.Errorf("%s: snapshot %s of backup %s is not in the repository", who, id, backup)
			continue
		}
		if s := listed[i]; s.Stats.CachedFiles == 0 || s.Stats.NonCachedFiles != 0 {
			t.Errorf("%s: snapshot %s of %s read %d files again and took %d from a parent; nothing changed, so it should read none",
				who, id, s.Source.Path, s.Stats.NonCachedFiles, s.Stats.CachedFiles)
		}
	}
}

func (v *veleroInstallation) podVolumeBackups(t *testing.T, backup string) []velerov1.PodVolumeBackup {
	list := &velerov1.PodVolumeBackupList{}
	must(t, v.c.Client.List(t.Context(), list, client.InNamespace(v.ns), client.MatchingLabels{velerov1.LabelBackupName: backup}))
	return list.Items
}

func (v *veleroInstallation) dataUploads(t *testing.T, backup string) []velerov2alpha1.DataUpload {
	list := &velerov2alpha1.DataUploadList{}
	must(t, v.c.Client.List(t.Context(), list, client.InNamespace(v.ns), client.MatchingLabels{velerov1.LabelBackupName: backup}))
	return list.Items
}

// stageTimes is how long a volume's operation took by its status timestamps (whole seconds).
func stageTimes(start, end *metav1.Time) string {
	if start == nil || end == nil {
		return "?s"
	}
	return end.Sub(start.Time).String()
}

// table formats the figures.
func (v *veleroInstallation) table() string {
	rows := append([][]string{{"operation", "agent", "data", "seconds", "volumes (by status timestamps)"}}, v.figures...)
	width := make([]int, 4)
	for _, r := range rows {
		for i := range width {
			width[i] = max(width[i], len(r[i]))
		}
	}
	var b strings.Builder
	for _, r := range rows {
		fmt.Fprintf(&b, "  %-*s  %-*s  %-*s  %*s  %s\n", width[0], r[0], width[1], r[1], width[2], r[2], width[3], r[3], r[4])
	}
	return b.String()
}
