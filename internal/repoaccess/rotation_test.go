package repoaccess_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/repoaccess"
	"github.com/ferry-backup/ferry/internal/repository"
	"github.com/ferry-backup/ferry/internal/testenv"
	"github.com/ferry-backup/ferry/internal/uploader"
)

// A backup and a restore of a node-agent hold their repositories while ferry-server changes the
// password (the user's Secret first, then the re-key, then the record of the applied password),
// and go on after Kopia's 15-minute re-read of the format: the backup finishes a new snapshot on
// its handle, the restore reads on its own. The next operation gets a new handle, opened with the
// new password.
func TestOperationsRunAcrossAPasswordChange(t *testing.T) {
	env := testenv.Get(t)
	ctx := t.Context()
	ns := testenv.Namespace(t, "repoaccess")
	password := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: repoaccess.PasswordSecret},
		Data: map[string][]byte{repoaccess.PasswordKey: []byte("before-rotation")}}
	applied := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: repoaccess.AppliedPasswordSecret},
		Data: map[string][]byte{repoaccess.PasswordKey: []byte("before-rotation")}}
	bsl := &velerov1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default"},
		Spec: velerov1.BackupStorageLocationSpec{Provider: velerov1.ProviderFilesystem, Config: map[string]string{"path": t.TempDir()},
			StorageType: velerov1.StorageType{ObjectStorage: &velerov1.ObjectStorageLocation{Bucket: "b"}}}}
	for _, obj := range []client.Object{password, applied, bsl} {
		if err := env.Client.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	var offset atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	server := repoaccess.New(repoaccess.Options{Client: env.Client, Namespace: ns, WorkDir: t.TempDir(), Create: true})
	defer server.Close(context.Background())
	agent := repoaccess.New(repoaccess.Options{Client: env.Client, Namespace: ns, WorkDir: t.TempDir(), Now: now})
	defer agent.Close(context.Background())
	_, release, err := server.Open(ctx, "default", repoaccess.ForBackup) // creates the repository
	if err != nil {
		t.Fatal(err)
	}
	release()

	src := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(src, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("before", "written before the rotation")
	backupRep, releaseBackup, err := agent.Open(ctx, "default", repoaccess.ForBackup)
	if err != nil {
		t.Fatal(err)
	}
	defer releaseBackup()
	first, err := uploader.Backup(ctx, backupRep, src, uploader.BackupOptions{Source: "/ns/pvc"})
	if err != nil {
		t.Fatal(err)
	}
	restoreRep, releaseRestore, err := agent.Open(ctx, "default", repoaccess.ForRestore)
	if err != nil {
		t.Fatal(err)
	}
	defer releaseRestore()

	// ferry-server's rotation, as the repositorypassword controller makes it.
	password.Data[repoaccess.PasswordKey] = []byte("after-rotation")
	if err := env.Client.Update(ctx, password); err != nil {
		t.Fatal(err)
	}
	if done, err := server.Rekey(ctx, "default", "before-rotation", "after-rotation"); err != nil || !done {
		t.Fatalf("re-key: %t, %v", done, err)
	}
	applied.Data[repoaccess.PasswordKey] = []byte("after-rotation")
	if err := env.Client.Update(ctx, applied); err != nil {
		t.Fatal(err)
	}
	offset.Store(int64(16 * time.Minute))

	write("after", "written after the rotation")
	second, err := uploader.Backup(ctx, backupRep, src, uploader.BackupOptions{Source: "/ns/pvc"})
	if err != nil {
		t.Fatalf("the backup's handle after the rotation: %v", err)
	}
	if second.ParentID != first.SnapshotID {
		t.Errorf("the backup after the rotation was not incremental: parent %q, want %q", second.ParentID, first.SnapshotID)
	}
	if _, err := uploader.Restore(ctx, restoreRep, first.SnapshotID, t.TempDir(), uploader.RestoreOptions{}); err != nil {
		t.Fatalf("the restore's handle after the rotation: %v", err)
	}

	next, releaseNext, err := agent.Open(ctx, "default", repoaccess.ForRestore)
	if err != nil {
		t.Fatalf("the next operation after the rotation: %v", err)
	}
	defer releaseNext()
	if next == restoreRep {
		t.Fatal("the next operation got the handle opened with the old password")
	}
	dst := t.TempDir()
	if _, err := uploader.Restore(ctx, next, second.SnapshotID, dst, uploader.RestoreOptions{}); err != nil {
		t.Fatalf("restore with the new password: %v", err)
	}
	if got, err := os.ReadFile(filepath.Join(dst, "after")); err != nil || string(got) != "written after the rotation" {
		t.Fatalf("restored %q, %v", got, err)
	}
}

// A password change that stopped between Kopia's two format blobs — here ferry-server's own
// re-key, with kopia.repository put back as it was before its second write — is reported by
// opening, and repaired by the next re-key, which then makes the change.
func TestRekeyRepairsAnInterruptedPasswordChange(t *testing.T) {
	env := testenv.Get(t)
	ctx := t.Context()
	ns := testenv.Namespace(t, "repoaccess")
	dir := t.TempDir()
	password := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: repoaccess.PasswordSecret},
		Data: map[string][]byte{repoaccess.PasswordKey: []byte("before-rotation")}}
	bsl := &velerov1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default"},
		Spec: velerov1.BackupStorageLocationSpec{Provider: velerov1.ProviderFilesystem, Config: map[string]string{"path": dir},
			StorageType: velerov1.StorageType{ObjectStorage: &velerov1.ObjectStorageLocation{Bucket: "b"}}}}
	for _, obj := range []client.Object{password, bsl} {
		if err := env.Client.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	server := repoaccess.New(repoaccess.Options{Client: env.Client, Namespace: ns, WorkDir: t.TempDir(), Create: true})
	defer server.Close(context.Background())
	rep, release, err := server.Open(ctx, "default", repoaccess.ForBackup)
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.SaveRecord(ctx, "backup", "b1", map[string]string{"kept": "yes"}); err != nil {
		t.Fatal(err)
	}
	release()

	formatFile := findFile(t, dir, "kopia.repository.f")
	before, err := os.ReadFile(formatFile)
	if err != nil {
		t.Fatal(err)
	}
	if done, err := server.Rekey(ctx, "default", "before-rotation", "after-rotation"); err != nil || !done {
		t.Fatalf("re-key: %t, %v", done, err)
	}
	if err := os.WriteFile(formatFile, before, 0o600); err != nil { // the second write never happened
		t.Fatal(err)
	}
	agent := repoaccess.New(repoaccess.Options{Client: env.Client, Namespace: ns, WorkDir: t.TempDir()})
	defer agent.Close(context.Background())
	if _, release, err := agent.Open(ctx, "default", repoaccess.ForRestore); !errors.Is(err, repository.ErrInterruptedRekey) {
		if err == nil {
			release()
		}
		t.Fatalf("open in the interrupted state: %v, want ErrInterruptedRekey", err)
	}

	if done, err := server.Rekey(ctx, "default", "before-rotation", "after-rotation"); err != nil || !done {
		t.Fatalf("the re-key after the interruption: %t, %v", done, err)
	}
	password.Data[repoaccess.PasswordKey] = []byte("after-rotation")
	if err := env.Client.Update(ctx, password); err != nil {
		t.Fatal(err)
	}
	rep, release, err = agent.Open(ctx, "default", repoaccess.ForRestore)
	if err != nil {
		t.Fatalf("the new password after the repair: %v", err)
	}
	defer release()
	var got map[string]string
	if err := rep.LoadRecord(ctx, "backup", "b1", &got); err != nil || got["kept"] != "yes" {
		t.Fatalf("record after the repair: %v, %v", got, err)
	}
}

// findFile returns the one file named name below dir.
func findFile(t *testing.T, dir, name string) string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Name() == name {
			found = append(found, p)
		}
		return err
	})
	if err != nil || len(found) != 1 {
		t.Fatalf("files named %s below %s: %v, %v", name, dir, found, err)
	}
	return found[0]
}
