package cluster

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferry-backup/ferry/api/shared"
	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/nodeconfig"
	"github.com/ferry-backup/ferry/internal/repoaccess"
	"github.com/ferry-backup/ferry/internal/repository"
	"github.com/ferry-backup/ferry/internal/uploader"
	"github.com/ferry-backup/ferry/test/harness"
)

func newBackup(t *testing.T, c *harness.Cluster, name, bsl string, namespaces ...string) *velerov1.Backup {
	t.Helper()
	yes := true
	b := &velerov1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: c.Install, Name: name},
		Spec: velerov1.BackupSpec{IncludedNamespaces: namespaces, DefaultVolumesToFsBackup: &yes, StorageLocation: bsl}}
	if err := c.Client.Create(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	return b
}

// The server's everyday work: an unreachable location fails a backup fast, two backups run at
// once, maintenance runs and keeps a short history, a changed password Secret re-keys the
// repository without losing earlier backups, and an expired backup is deleted with its snapshots.
func TestServerOperations(t *testing.T) {
	c := harness.New(t)
	c.SetNodeAgentConfig(map[string]string{"keepLatestMaintenance": "2", "concurrentRepoOperations": "2"})
	c.StartServer()
	node := c.StartNode("node-a")
	one, two := c.Namespace("one"), c.Namespace("two")
	for i, ns := range []string{one, two} {
		p := c.CreatePod(node, ns, "app", harness.VolumeSpec{Name: "data", Claim: "app-data"})
		if err := harness.FillVolume(p.Dirs["data"], 10, 8<<20, uint64(70+i)); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("unavailable location fails fast", func(t *testing.T) {
		bsl := &velerov1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Namespace: c.Install, Name: "broken"},
			Spec: velerov1.BackupStorageLocationSpec{Provider: "aws", Config: map[string]string{"s3Url": "http://127.0.0.1:9", "region": "us-east-1"},
				StorageType: velerov1.StorageType{ObjectStorage: &velerov1.ObjectStorageLocation{Bucket: "nowhere"}}}}
		if err := c.Client.Create(context.Background(), bsl); err != nil {
			t.Fatal(err)
		}
		c.Eventually(time.Minute, func() (bool, string) {
			_ = c.Client.Get(context.Background(), client.ObjectKeyFromObject(bsl), bsl)
			return bsl.Status.Phase == velerov1.BackupStorageLocationPhaseUnavailable, "location is " + string(bsl.Status.Phase)
		})
		b := newBackup(t, c, "to-broken", "broken", one)
		start := time.Now()
		waitBackup(t, c, b, velerov1.BackupPhaseFailed)
		if !strings.Contains(b.Status.FailureReason, "broken is Unavailable") || !strings.Contains(b.Status.FailureReason, "127.0.0.1:9") {
			t.Errorf("failure reason %q", b.Status.FailureReason)
		}
		t.Logf("failed after %s: %s", time.Since(start).Round(time.Millisecond), b.Status.FailureReason)
		// An unreachable location would hold back the password change below (its repository
		// could not be re-keyed); that case is its own story.
		if err := c.Client.Delete(context.Background(), bsl); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("two backups at once", func(t *testing.T) {
		first, second := newBackup(t, c, "first", "default", one), newBackup(t, c, "second", "default", one, two)
		waitBackup(t, c, first, velerov1.BackupPhaseCompleted)
		waitBackup(t, c, second, velerov1.BackupPhaseCompleted)
		if first.Status.PodVolumeBackups.Completed != 1 || second.Status.PodVolumeBackups.Completed != 2 {
			t.Errorf("counts: %+v and %+v", first.Status.PodVolumeBackups, second.Status.PodVolumeBackups)
		}
	})

	t.Run("maintenance keeps a short history", func(t *testing.T) {
		br := &velerov1.BackupRepository{ObjectMeta: metav1.ObjectMeta{Namespace: c.Install, Name: "default-kopia"}}
		c.PatchSpec(br, map[string]any{"maintenanceFrequency": "1s"})
		c.Eventually(time.Minute, func() (bool, string) {
			_ = c.Client.Get(context.Background(), client.ObjectKeyFromObject(br), br)
			full := br.Annotations["ferry.io/last-full-maintenance"] != ""
			return len(br.Status.RecentMaintenance) == 2 && br.Status.LastMaintenanceTime != nil && full &&
					strings.Contains(br.Status.RecentMaintenance[1].Message, "quick maintenance"),
				"recent maintenance: " + describeRuns(br.Status.RecentMaintenance)
		})
		for _, m := range br.Status.RecentMaintenance {
			if m.Result != velerov1.BackupRepositoryMaintenanceSucceeded {
				t.Errorf("maintenance run: %+v", m)
			}
		}
		// The Jobs measured the repository: the backups above are in it.
		if stats, ok := br.RepositoryStats(); !ok || stats.Snapshots < 2 || stats.SizeBytes <= 0 || stats.LastFull == nil {
			t.Errorf("repository stats after maintenance: %+v (%v)", stats, ok)
		}

		// Each run is a Job of its own; one killed mid-run (as for memory) is recorded as failed,
		// and the next run, a second later, succeeds on the same repository.
		c.SetNodeAgentConfig(map[string]string{"keepLatestMaintenance": "20", "concurrentRepoOperations": "2"})
		var killed []string
		c.Eventually(time.Minute, func() (bool, string) {
			killed = c.KillJobs()
			return len(killed) > 0, "no maintenance Job running to kill"
		})
		c.Eventually(time.Minute, func() (bool, string) {
			_ = c.Client.Get(context.Background(), client.ObjectKeyFromObject(br), br)
			runs := br.Status.RecentMaintenance
			for i, m := range runs {
				if m.Result == velerov1.BackupRepositoryMaintenanceFailed && strings.Contains(m.Message, "maintenance Job "+killed[0]+" failed") &&
					strings.Contains(m.Message, "OOMKilled") {
					return slices.ContainsFunc(runs[i+1:], func(m velerov1.BackupRepositoryMaintenanceStatus) bool {
						return m.Result == velerov1.BackupRepositoryMaintenanceSucceeded
					}), "no successful run after the killed one: " + describeRuns(runs)
				}
			}
			return false, "the killed Job " + killed[0] + " is not recorded: " + describeRuns(runs)
		})
		c.SetNodeAgentConfig(map[string]string{"keepLatestMaintenance": "2", "concurrentRepoOperations": "2"})
		c.PatchSpec(br, map[string]any{"maintenanceFrequency": "1h"})
		jobs := &batchv1.JobList{}
		c.Eventually(time.Minute, func() (bool, string) {
			_ = c.Client.List(context.Background(), jobs, client.InNamespace(c.Install), client.MatchingLabels{"ferry.io/backup-repository": br.Name})
			return len(jobs.Items) <= 4, fmt.Sprintf("%d maintenance Jobs kept, want the latest 3 and at most one running", len(jobs.Items))
		})
	})

	t.Run("changing the password Secret re-keys the repository", func(t *testing.T) {
		c.SetPassword("rotated-password-2")
		c.Eventually(time.Minute, func() (bool, string) {
			s := &corev1.Secret{}
			_ = c.Client.Get(context.Background(), client.ObjectKey{Namespace: c.Install, Name: repoaccess.AppliedPasswordSecret}, s)
			return string(s.Data[repoaccess.PasswordKey]) == "rotated-password-2", "the new password is not applied yet"
		})
		loc := repository.Location{Provider: repository.ProviderFilesystem, Bucket: "default", Prefix: "ferry",
			Config: map[string]string{"path": filepath.Join(c.Dir, "storage")}}
		_, err := repository.Open(context.Background(), repository.Options{Location: loc, Password: "harness-password-1", WorkDir: t.TempDir(), MustExist: true,
			LockCheckTimeout: nodeconfig.Default().BackupRepositoryLockCheckTimeout})
		if !errors.Is(err, repository.ErrWrongPassword) {
			t.Errorf("the old password still opens the repository: %v", err)
		}
		after := newBackup(t, c, "after-rotation", "default", one)
		waitBackup(t, c, after, velerov1.BackupPhaseCompleted)
		target := c.CreatePod(node, c.Namespace("restored"), "app", harness.VolumeSpec{Name: "data", Claim: "app-data"})
		rs := &velerov1.Restore{ObjectMeta: metav1.ObjectMeta{Namespace: c.Install, Name: "old-backup-new-password"},
			Spec: velerov1.RestoreSpec{BackupName: "first", NamespaceMapping: map[string]string{one: target.Namespace}}}
		if err := c.Client.Create(context.Background(), rs); err != nil {
			t.Fatal(err)
		}
		waitRestore(t, c, rs, velerov1.RestorePhaseCompleted)
	})

	t.Run("an expired backup is deleted", func(t *testing.T) {
		yes := true
		b := &velerov1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: c.Install, Name: "short-lived"},
			Spec: velerov1.BackupSpec{IncludedNamespaces: []string{two}, DefaultVolumesToFsBackup: &yes, TTL: shared.Duration{Duration: 3 * time.Second}}}
		if err := c.Client.Create(context.Background(), b); err != nil {
			t.Fatal(err)
		}
		c.Eventually(time.Minute, func() (bool, string) {
			err := c.Client.Get(context.Background(), client.ObjectKeyFromObject(b), b)
			return err != nil, "backup short-lived is still there, phase " + string(b.Status.Phase)
		})
		// The Backup object goes before its request is marked Processed (Velero's order too).
		dbr := &velerov1.DeleteBackupRequest{}
		c.Eventually(time.Minute, func() (bool, string) {
			if err := c.Client.Get(context.Background(), client.ObjectKey{Namespace: c.Install, Name: "short-lived-expired"}, dbr); err != nil {
				return false, "the expiry's DeleteBackupRequest: " + err.Error()
			}
			return dbr.Status.Phase == velerov1.DeleteBackupRequestPhaseProcessed, "the expiry's DeleteBackupRequest is " + string(dbr.Status.Phase)
		})
		if len(dbr.Status.Errors) > 0 {
			t.Errorf("the expiry's DeleteBackupRequest: %+v", dbr.Status)
		}
		if left := snapshotsOf(t, c, "rotated-password-2", "short-lived"); len(left) != 0 {
			t.Errorf("snapshots of the expired backup left: %v", left)
		}
	})
}

// snapshotsOf lists the snapshots (checkpoints too) tagged with the backup in the harness's
// default location.
func snapshotsOf(t *testing.T, c *harness.Cluster, password, backup string) []uploader.Snapshot {
	t.Helper()
	return listSnapshots(t, openDefault(t, c, password), backup)
}

// snapshotsAt lists the backup's snapshots in the repository at loc.
func snapshotsAt(t *testing.T, loc repository.Location, password, backup string) []uploader.Snapshot {
	t.Helper()
	return listSnapshots(t, openAt(t, loc, password), backup)
}

func listSnapshots(t *testing.T, rep *repository.Repository, backup string) []uploader.Snapshot {
	t.Helper()
	found, err := uploader.List(context.Background(), rep, map[string]string{"backup": backup}, true)
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// openDefault opens the harness's default location as another process would.
func openDefault(t *testing.T, c *harness.Cluster, password string) *repository.Repository {
	t.Helper()
	return openAt(t, repository.Location{Provider: repository.ProviderFilesystem, Bucket: "default", Prefix: "ferry",
		Config: map[string]string{"path": filepath.Join(c.Dir, "storage")}}, password)
}

// openAt opens the repository at loc as another process would: a node-agent waits
// backupRepositoryLockCheckTimeout (default 1m) while the server's maintenance holds the
// repository's exclusive lock, and so does this.
func openAt(t *testing.T, loc repository.Location, password string) *repository.Repository {
	t.Helper()
	rep, err := repository.Open(context.Background(), repository.Options{Location: loc, Password: password, WorkDir: t.TempDir(),
		MustExist: true, NoCache: true, LockCheckTimeout: nodeconfig.Default().BackupRepositoryLockCheckTimeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rep.Close(context.Background()) })
	return rep
}

func describeRuns(runs []velerov1.BackupRepositoryMaintenanceStatus) string {
	var parts []string
	for _, r := range runs {
		parts = append(parts, string(r.Result)+" "+r.Message)
	}
	return strings.Join(parts, "; ")
}

// With no password Secret, the server creates one with a random password; deleted later, the
// Secret comes back with that password.
func TestServerGeneratesThePasswordSecret(t *testing.T) {
	c := harness.New(t)
	for _, name := range []string{repoaccess.PasswordSecret, repoaccess.AppliedPasswordSecret} {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: c.Install, Name: name}}
		if err := client.IgnoreNotFound(c.Client.Delete(context.Background(), s)); err != nil {
			t.Fatal(err)
		}
	}
	server := c.StartServer()
	s := &corev1.Secret{}
	c.Eventually(time.Minute, func() (bool, string) {
		err := c.Client.Get(context.Background(), client.ObjectKey{Namespace: c.Install, Name: repoaccess.PasswordSecret}, s)
		return err == nil && len(s.Data[repoaccess.PasswordKey]) >= 40, "no generated password Secret"
	})
	if strings.Contains(server.Log(), string(s.Data[repoaccess.PasswordKey])) {
		t.Fatal("the generated password appears in the server's log")
	}

	// Deleted by mistake, it comes back with the password in force, not a new random one: the
	// copy the user was told to keep goes on working.
	generated := string(s.Data[repoaccess.PasswordKey])
	applied := &corev1.Secret{}
	c.Eventually(time.Minute, func() (bool, string) {
		err := c.Client.Get(context.Background(), client.ObjectKey{Namespace: c.Install, Name: repoaccess.AppliedPasswordSecret}, applied)
		return err == nil, "the password is not recorded as applied yet"
	})
	if err := c.Client.Delete(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	c.Eventually(time.Minute, func() (bool, string) {
		again := &corev1.Secret{}
		err := c.Client.Get(context.Background(), client.ObjectKey{Namespace: c.Install, Name: repoaccess.PasswordSecret}, again)
		if err != nil || again.UID == s.UID {
			return false, "not re-created yet"
		}
		if got := string(again.Data[repoaccess.PasswordKey]); got != generated {
			t.Fatalf("re-created with another password (%d bytes) than the one in force", len(got))
		}
		return true, ""
	})
}
