package repoaccess_test

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/repoaccess"
	"github.com/ferry-backup/ferry/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Run(m) }

// A handle kept open from an earlier operation sees what other processes wrote since: a backup
// made after a restore can be restored (the server kept its restore handle open meanwhile).
func TestReusedHandleSeesNewerWrites(t *testing.T) {
	env := testenv.Get(t)
	ctx := t.Context()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "repoaccess-"}}
	if err := env.Client.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: repoaccess.PasswordSecret},
		StringData: map[string]string{repoaccess.PasswordKey: "access-test-password"}}
	bsl := &velerov1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "default"},
		Spec: velerov1.BackupStorageLocationSpec{Provider: velerov1.ProviderFilesystem, Config: map[string]string{"path": t.TempDir()},
			StorageType: velerov1.StorageType{ObjectStorage: &velerov1.ObjectStorageLocation{Bucket: "b"}}}}
	if err := env.Client.Create(ctx, secret); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Create(ctx, bsl); err != nil {
		t.Fatal(err)
	}
	server := repoaccess.New(repoaccess.Options{Client: env.Client, Namespace: ns.Name, WorkDir: t.TempDir(), Create: true})
	defer server.Close(context.Background())
	agent := repoaccess.New(repoaccess.Options{Client: env.Client, Namespace: ns.Name, WorkDir: t.TempDir()})
	defer agent.Close(context.Background())

	// The server opens its restore handle (and keeps it), then another process writes.
	rep, release, err := server.Open(ctx, "default", repoaccess.ForRestore)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]string
	if err := rep.LoadRecord(ctx, "backup", "later", &got); err == nil {
		t.Fatal("a record exists before it was written")
	}
	release()
	w, release, err := agent.Open(ctx, "default", repoaccess.ForBackup)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.SaveRecord(ctx, "backup", "later", map[string]string{"volumes": "3"}); err != nil {
		t.Fatal(err)
	}
	release()

	rep, release, err = server.Open(ctx, "default", repoaccess.ForRestore)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if err := rep.LoadRecord(ctx, "backup", "later", &got); err != nil {
		t.Fatalf("the server's reused handle does not see the record written by another process: %v", err)
	}
	if got["volumes"] != "3" {
		t.Fatalf("record: %v", got)
	}
}
