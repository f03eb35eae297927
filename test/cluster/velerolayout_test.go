package cluster

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/backuprecord"
	"github.com/ferry-backup/ferry/internal/nodeconfig"
	"github.com/ferry-backup/ferry/internal/repoaccess"
	"github.com/ferry-backup/ferry/internal/repository"
	"github.com/ferry-backup/ferry/internal/uploader"
	"github.com/ferry-backup/ferry/test/harness"
)

// ferry-server in Velero's layout: a backup of two namespaces gets a BackupRepository per
// namespace named and labelled as Velero's, writes each namespace's snapshots to
// <prefix>/kopia/<namespace>/ and its record to the location's repository, restores byte for
// byte, verifies, and a DeleteBackupRequest deletes the snapshots from both namespace repositories.
func TestServerInVelerosLayout(t *testing.T) {
	c := harness.New(t)
	bsl := &velerov1.BackupStorageLocation{}
	if err := c.Client.Get(context.Background(), client.ObjectKey{Namespace: c.Install, Name: "default"}, bsl); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(bsl.DeepCopy())
	bsl.Annotations = map[string]string{repoaccess.LayoutAnnotation: repoaccess.LayoutVelero}
	if err := c.Client.Patch(context.Background(), bsl, patch); err != nil {
		t.Fatal(err)
	}
	c.StartServer()
	node := c.StartNode("node-a")
	shop, blog := c.Namespace("shop"), c.Namespace("blog")
	pods := map[string]*harness.Pod{
		shop: c.CreatePod(node, shop, "web", harness.VolumeSpec{Name: "data", Claim: "web-data"}),
		blog: c.CreatePod(node, blog, "db", harness.VolumeSpec{Name: "data", Claim: "db-data"}),
	}
	want := map[string]string{}
	for ns, p := range pods {
		if err := harness.FillVolume(p.Dirs["data"], 6, 2<<20, uint64(len(ns))); err != nil {
			t.Fatal(err)
		}
		want[ns], _ = harness.Describe(p.Dirs["data"])
	}
	b := newBackup(t, c, "nightly", "default", shop, blog)
	waitBackup(t, c, b, velerov1.BackupPhaseCompleted)

	for _, ns := range []string{shop, blog} {
		br := &velerov1.BackupRepository{}
		if err := c.Client.Get(context.Background(), client.ObjectKey{Namespace: c.Install, Name: ns + "-default-kopia"}, br); err != nil {
			t.Fatalf("the BackupRepository of %s: %v", ns, err)
		}
		if br.Spec.VolumeNamespace != ns || br.Labels["velero.io/volume-namespace"] != ns || br.Status.Phase != velerov1.BackupRepositoryPhaseReady {
			t.Errorf("BackupRepository %s: labels %v, spec %+v, phase %s", br.Name, br.Labels, br.Spec, br.Status.Phase)
		}
		if got := namespaceSnapshots(t, c, ns, "nightly"); len(got) != 1 {
			t.Errorf("snapshots of nightly in kopia/%s: %d, want 1", ns, len(got))
		}
	}
	if got := snapshotsOf(t, c, harnessPassword, "nightly"); len(got) != 0 {
		t.Errorf("snapshots of nightly in the location's repository: %d, want none", len(got))
	}
	var rec backuprecord.Record
	if err := openDefault(t, c, harnessPassword).LoadRecord(context.Background(), backuprecord.Kind, "nightly", &rec); err != nil {
		t.Fatalf("the record in the location's repository: %v", err)
	}
	for _, v := range rec.Volumes {
		if v.RepositoryNamespace != v.Namespace {
			t.Errorf("the record places the volume of %s in repository %q", v.Namespace, v.RepositoryNamespace)
		}
	}

	// Verification reads each volume's snapshot from the repository the record names.
	out, err := c.Ferry("backup", "verify", "nightly", "--percent", "100", "--timeout", "3m")
	if err != nil || !strings.Contains(out, shop+"/web/data") || !strings.Contains(out, blog+"/db/data") {
		t.Errorf("verifying the backup: %v\n%s", err, out)
	}

	target := c.CreatePod(node, c.Namespace("shop-restored"), "web", harness.VolumeSpec{Name: "data", Claim: "web-data"})
	rs := newRestore(t, c, "nightly-restore", "nightly", shop, target.Namespace)
	waitRestore(t, c, rs, velerov1.RestorePhaseCompleted)
	if got, _ := harness.Describe(target.Dirs["data"]); got != want[shop] {
		t.Error("the volume restored from kopia/" + shop + " differs")
	}

	dbr := deleteRequest(t, c, "nightly")
	if len(dbr.Status.Errors) > 0 {
		t.Fatalf("errors: %q", dbr.Status.Errors)
	}
	for _, ns := range []string{shop, blog} {
		if got := namespaceSnapshots(t, c, ns, "nightly"); len(got) != 0 {
			t.Errorf("after the deletion, snapshots of nightly in kopia/%s: %d", ns, len(got))
		}
	}
	if err := openDefault(t, c, harnessPassword).LoadRecord(context.Background(), backuprecord.Kind, "nightly", &rec); !errors.Is(err, repository.ErrNoRecord) {
		t.Errorf("the record after the deletion: %v, want none", err)
	}
	if err := c.Client.Get(context.Background(), client.ObjectKeyFromObject(b), b); err == nil {
		t.Errorf("the Backup is still there (%s)", b.Status.Phase)
	}
}

// namespaceSnapshots lists the backup's snapshots in the namespace's repository of the
// harness's default location, in Velero's layout.
func namespaceSnapshots(t *testing.T, c *harness.Cluster, namespace, backup string) []uploader.Snapshot {
	t.Helper()
	loc := repository.Location{Provider: repository.ProviderFilesystem, Bucket: "default", Prefix: "ferry",
		Config: map[string]string{"path": filepath.Join(c.Dir, "storage")}}.ForNamespace(namespace)
	rep, err := repository.Open(context.Background(), repository.Options{Location: loc, Password: harnessPassword,
		WorkDir: t.TempDir(), MustExist: true, NoCache: true, Identity: repository.VeleroIdentity,
		LockCheckTimeout: nodeconfig.Default().BackupRepositoryLockCheckTimeout})
	if err != nil {
		t.Fatalf("open kopia/%s: %v", namespace, err)
	}
	t.Cleanup(func() { rep.Close(context.Background()) })
	found, err := uploader.List(context.Background(), rep, map[string]string{"backup": backup}, true)
	if err != nil {
		t.Fatal(err)
	}
	return found
}
