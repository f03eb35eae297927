package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/controller/backupsync"
	"github.com/ferry-backup/ferry/internal/repoaccess"
)

// Taking Ferry away never takes the data: `ferry uninstall --delete-namespace` removes every
// object it made and no byte of the bucket; a reinstall with the old password Secret and the
// same location lists the backups again through sync, and one restores by name byte for byte.
// Then `kubectl delete ns velero` ends in seconds (no finalizer holds it) and deletes nothing
// stored either. Ferry is installed again at the end, for the stories after this one.
func TestUninstallAndNamespaceDeletionKeepTheData(t *testing.T) {
	c, ns := story(t, "keep")
	ctx := t.Context()
	app := c.NewApp(ns)
	t.Cleanup(app.Discard)
	must(t, app.Deploy(ctx))
	must(t, app.Fill(ctx, 100, 8))
	want, err := app.Describe(ctx)
	must(t, err)
	b, err := c.Backup(ctx, ns, nil, ns)
	must(t, err)
	must(t, c.WaitBackup(ctx, b, 5*time.Minute))
	if b.Status.Phase != velerov1.BackupPhaseCompleted {
		t.Fatalf("backup %s: %s: %s", b.Name, b.Status.Phase, b.Status.FailureReason)
	}
	password := &corev1.Secret{}
	must(t, c.Client.Get(ctx, client.ObjectKey{Namespace: InstallNamespace, Name: repoaccess.PasswordSecret}, password))
	stored, err := c.StoredObjects(ctx)
	must(t, err)

	start := time.Now()
	out, err := c.Ferry(ctx, "uninstall", "--delete-namespace", "--wait", "3m")
	must(t, err)
	t.Logf("ferry uninstall --delete-namespace took %s:\n%s", time.Since(start).Round(time.Millisecond), indent(out))
	if err := c.Client.Get(ctx, client.ObjectKey{Name: InstallNamespace}, &corev1.Namespace{}); !apierrors.IsNotFound(err) {
		t.Errorf("namespace %s after uninstall: %v", InstallNamespace, err)
	}
	if out, err := c.Kubectl(ctx, "", "get", "crd", "-o", "name"); err != nil || strings.Contains(out, "velero.io") {
		t.Errorf("CRDs after uninstall: %v\n%s", err, out)
	}
	c.mustKeep(t, stored, "ferry uninstall")

	synced := c.reinstall(t, password, b.Name)
	t.Logf("reinstalled with the old password Secret: backup %s listed by sync %s after the location was Available", b.Name, synced)
	must(t, app.Delete(ctx))
	must(t, app.Deploy(ctx))
	restoreAndVerify(t, c, app, ns+"-after-reinstall", b.Name, want)

	stored, err = c.StoredObjects(ctx)
	must(t, err)
	start = time.Now()
	_, err = c.Kubectl(ctx, "", "delete", "namespace", InstallNamespace, "--wait=false")
	must(t, err)
	must(t, c.Poll(ctx, 30*time.Second, "namespace "+InstallNamespace+" to be gone", func() (bool, string, error) {
		ns := &corev1.Namespace{}
		err := c.Client.Get(ctx, client.ObjectKey{Name: InstallNamespace}, ns)
		if apierrors.IsNotFound(err) {
			return true, "", nil
		}
		return false, string(ns.Status.Phase) + " " + conditions(ns), err
	}))
	t.Logf("kubectl delete namespace %s: gone in %s", InstallNamespace, time.Since(start).Round(time.Millisecond))
	c.mustKeep(t, stored, "kubectl delete namespace "+InstallNamespace)
	c.reinstall(t, password, b.Name)
}

// mustKeep fails the test if an object of before is gone from the bucket.
func (c *Cluster) mustKeep(t *testing.T, before map[string]int64, after string) {
	t.Helper()
	now, err := c.StoredObjects(t.Context())
	must(t, err)
	if gone := Missing(before, now); len(gone) > 0 {
		t.Errorf("%s deleted %d of %d stored objects: %v", after, len(gone), len(before), gone[:min(len(gone), 5)])
	}
}

// reinstall puts the password Secret back before Ferry (a server that finds none makes a new
// random password), installs Ferry, and waits until sync lists the backup; it returns how long
// sync took once the location was Available.
func (c *Cluster) reinstall(t *testing.T, password *corev1.Secret, backup string) time.Duration {
	t.Helper()
	ctx := t.Context()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: InstallNamespace}}
	if err := c.Client.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: InstallNamespace, Name: password.Name}, Data: password.Data}
	must(t, c.Client.Create(ctx, secret))
	installCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if err := c.Install(installCtx, t.Logf); err != nil {
		t.Fatalf("reinstall: %v\n%s", err, c.Diagnose(ctx, InstallNamespace))
	}
	available := time.Now()
	b := &velerov1.Backup{}
	must(t, c.Poll(ctx, backupsync.DefaultPeriod+30*time.Second, "backup sync to list "+backup, func() (bool, string, error) {
		err := c.Client.Get(ctx, client.ObjectKey{Namespace: InstallNamespace, Name: backup}, b)
		if apierrors.IsNotFound(err) {
			return false, "not listed", nil
		}
		return err == nil && b.Status.Phase == velerov1.BackupPhaseCompleted, string(b.Status.Phase), err
	}))
	return time.Since(available).Round(time.Second)
}

func conditions(ns *corev1.Namespace) string {
	var s string
	for _, c := range ns.Status.Conditions {
		if c.Status == corev1.ConditionTrue {
			s += string(c.Type) + ": " + c.Message + "; "
		}
	}
	return s
}
