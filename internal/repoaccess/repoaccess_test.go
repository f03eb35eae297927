package repoaccess_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/config/rbac"
	"github.com/ferry-backup/ferry/internal/repoaccess"
	"github.com/ferry-backup/ferry/internal/repository/repotest"
	"github.com/ferry-backup/ferry/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Run(m, repotest.Stop) }

// A handle kept open from an earlier operation sees what other processes wrote since: a backup
// made after a restore can be restored (the server kept its restore handle open meanwhile).
func TestReusedHandleSeesNewerWrites(t *testing.T) {
	env := testenv.Get(t)
	ctx := t.Context()
	ns := testenv.Namespace(t, "repoaccess")
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: repoaccess.PasswordSecret},
		StringData: map[string]string{repoaccess.PasswordKey: "access-test-password"}}
	bsl := &velerov1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default"},
		Spec: velerov1.BackupStorageLocationSpec{Provider: velerov1.ProviderFilesystem, Config: map[string]string{"path": t.TempDir()},
			StorageType: velerov1.StorageType{ObjectStorage: &velerov1.ObjectStorageLocation{Bucket: "b"}}}}
	if err := env.Client.Create(ctx, secret); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Create(ctx, bsl); err != nil {
		t.Fatal(err)
	}
	server := repoaccess.New(repoaccess.Options{Client: env.Client, Namespace: ns, WorkDir: t.TempDir(), Create: true})
	defer server.Close(context.Background())
	agent := repoaccess.New(repoaccess.Options{Client: env.Client, Namespace: ns, WorkDir: t.TempDir()})
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

// The node-agent's generated rules name the two password Secrets this package reads (the RBAC
// markers cannot refer to the constants).
func TestNodeAgentMayReadThePasswordSecrets(t *testing.T) {
	rules, err := rbac.For("node-agent")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range rules.Namespace {
		if slices.Contains(r.Resources, "secrets") && slices.Contains(r.Verbs, "get") {
			names = append(names, r.ResourceNames...)
		}
	}
	for _, want := range []string{repoaccess.PasswordSecret, repoaccess.AppliedPasswordSecret} {
		if !slices.Contains(names, want) {
			t.Errorf("the node-agent may read the Secrets %v, not %s", names, want)
		}
	}
}

// A location whose credential Secret the node-agent may not read fails with a message that
// names the install flag that grants it.
func TestForbiddenCredentialsNameTheFlag(t *testing.T) {
	env := testenv.Get(t)
	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "nobody-in-particular"}
	c, err := client.New(cfg, client.Options{Scheme: env.Client.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	a := repoaccess.New(repoaccess.Options{Client: c, Namespace: "default", WorkDir: t.TempDir()})
	bsl := &velerov1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "site-b"},
		Spec: velerov1.BackupStorageLocationSpec{Provider: velerov1.ProviderAWS,
			Credential:  &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "site-b-credentials"}, Key: "cloud"},
			StorageType: velerov1.StorageType{ObjectStorage: &velerov1.ObjectStorageLocation{Bucket: "b"}}}}
	_, err = a.LocationOf(testenv.Context(t), bsl)
	if err == nil || !strings.Contains(err.Error(), "--credential-secrets") || !strings.Contains(err.Error(), "site-b-credentials") {
		t.Fatalf("LocationOf with credentials it may not read = %v, want an error naming the Secret and --credential-secrets", err)
	}
}

// Rotated S3 keys apply at once: a connection opened with the old keys is not reused once the
// credentials Secret changed (revoked keys fail the next operation instead of working on until
// a restart), and the new keys work.
func TestRotatedCredentialsOpenANewConnection(t *testing.T) {
	env := testenv.Get(t)
	ctx := t.Context()
	ns := testenv.Namespace(t, "repoaccess")
	loc := repotest.S3(t)
	ini := func(id, secret string) []byte {
		return []byte(fmt.Sprintf("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n", id, secret))
	}
	creds := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cloud-credentials"},
		Data: map[string][]byte{"cloud": ini(loc.Credentials.AccessKeyID, loc.Credentials.SecretAccessKey)}}
	password := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: repoaccess.PasswordSecret},
		StringData: map[string]string{repoaccess.PasswordKey: "access-test-password"}}
	bsl := &velerov1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default"},
		Spec: velerov1.BackupStorageLocationSpec{Provider: velerov1.ProviderAWS, Config: loc.Config,
			Credential:  &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: creds.Name}, Key: "cloud"},
			StorageType: velerov1.StorageType{ObjectStorage: &velerov1.ObjectStorageLocation{Bucket: loc.Bucket, Prefix: loc.Prefix}}}}
	for _, obj := range []client.Object{creds, password, bsl} {
		if err := env.Client.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	access := repoaccess.New(repoaccess.Options{Client: env.Client, Namespace: ns, WorkDir: t.TempDir(), Create: true})
	defer access.Close(context.Background())
	_, release, err := access.Open(ctx, "default", repoaccess.ForBackup)
	if err != nil {
		t.Fatal(err)
	}
	release()

	creds.Data["cloud"] = ini(loc.Credentials.AccessKeyID, "revoked-secret-key")
	if err := env.Client.Update(ctx, creds); err != nil {
		t.Fatal(err)
	}
	if _, release, err := access.Open(ctx, "default", repoaccess.ForBackup); err == nil {
		release()
		t.Fatal("the connection opened with the old keys was reused after the keys changed")
	}
	creds.Data["cloud"] = ini(loc.Credentials.AccessKeyID, loc.Credentials.SecretAccessKey)
	if err := env.Client.Update(ctx, creds); err != nil {
		t.Fatal(err)
	}
	_, release, err = access.Open(ctx, "default", repoaccess.ForBackup)
	if err != nil {
		t.Fatalf("the restored keys: %v", err)
	}
	release()
}

// A ReadOnly location is never re-keyed: after the password changed, it is opened with the
// password recorded for it when the others were re-keyed.
func TestReadOnlyLocationKeepsItsPasswordAfterARotation(t *testing.T) {
	env := testenv.Get(t)
	ctx := t.Context()
	ns := testenv.Namespace(t, "repoaccess")
	password := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: repoaccess.PasswordSecret},
		Data: map[string][]byte{repoaccess.PasswordKey: []byte("before-rotation")}}
	bsl := &velerov1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "archive"},
		Spec: velerov1.BackupStorageLocationSpec{Provider: velerov1.ProviderFilesystem, Config: map[string]string{"path": t.TempDir()},
			StorageType: velerov1.StorageType{ObjectStorage: &velerov1.ObjectStorageLocation{Bucket: "b"}}}}
	for _, obj := range []client.Object{password, bsl} {
		if err := env.Client.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	creator := repoaccess.New(repoaccess.Options{Client: env.Client, Namespace: ns, WorkDir: t.TempDir(), Create: true})
	_, release, err := creator.Open(ctx, "archive", repoaccess.ForBackup)
	if err != nil {
		t.Fatal(err)
	}
	release()
	creator.Close(context.Background())

	bsl.Spec.AccessMode = velerov1.BackupStorageLocationAccessModeReadOnly
	password.Data[repoaccess.PasswordKey] = []byte("after-rotation")
	applied := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: repoaccess.AppliedPasswordSecret},
		Data: map[string][]byte{repoaccess.PasswordKey: []byte("after-rotation")}}
	for _, obj := range []client.Object{bsl, password} {
		if err := env.Client.Update(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	if err := env.Client.Create(ctx, applied); err != nil {
		t.Fatal(err)
	}
	agent := repoaccess.New(repoaccess.Options{Client: env.Client, Namespace: ns, WorkDir: t.TempDir()})
	defer agent.Close(context.Background())
	if _, release, err := agent.Open(ctx, "archive", repoaccess.ForRestore); err == nil {
		release()
		t.Fatal("opened with a password that is not the repository's")
	}
	applied.Data[repoaccess.LocationPasswordKey("archive")] = []byte("before-rotation")
	if err := env.Client.Update(ctx, applied); err != nil {
		t.Fatal(err)
	}
	_, release, err = agent.Open(ctx, "archive", repoaccess.ForRestore)
	if err != nil {
		t.Fatalf("the ReadOnly location with its recorded password: %v", err)
	}
	release()
}

// A location without spec.credential, as `velero install` creates it, takes its keys from the
// file AWS_SHARED_CREDENTIALS_FILE names, in the profile of its config (the real S3 server
// refuses anonymous requests, so only the file's keys of that profile open it).
func TestLocationWithoutCredentialUsesTheSharedCredentialsFile(t *testing.T) {
	env := testenv.Get(t)
	ctx := t.Context()
	ns := testenv.Namespace(t, "repoaccess")
	loc := repotest.S3(t)
	config := map[string]string{"profile": "backup"}
	for k, v := range loc.Config {
		config[k] = v
	}
	password := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: repoaccess.PasswordSecret},
		StringData: map[string]string{repoaccess.PasswordKey: "access-test-password"}}
	bsl := &velerov1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default"},
		Spec: velerov1.BackupStorageLocationSpec{Provider: "velero.io/aws", Config: config,
			StorageType: velerov1.StorageType{ObjectStorage: &velerov1.ObjectStorageLocation{Bucket: loc.Bucket, Prefix: loc.Prefix}}}}
	for _, obj := range []client.Object{password, bsl} {
		if err := env.Client.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	file := filepath.Join(t.TempDir(), "cloud")
	ini := fmt.Sprintf("[default]\naws_access_key_id = %s\naws_secret_access_key = not-the-key\n\n[backup]\naws_access_key_id = %s\naws_secret_access_key = %s\n",
		loc.Credentials.AccessKeyID, loc.Credentials.AccessKeyID, loc.Credentials.SecretAccessKey)
	if err := os.WriteFile(file, []byte(ini), 0o600); err != nil {
		t.Fatal(err)
	}
	open := func(credentialsFile string) error {
		access := repoaccess.New(repoaccess.Options{Client: env.Client, Namespace: ns, WorkDir: t.TempDir(), Create: true,
			CredentialsFile: credentialsFile})
		defer access.Close(context.Background())
		_, release, err := access.Open(ctx, "default", repoaccess.ForBackup)
		if err == nil {
			release()
		}
		return err
	}
	if err := open(""); err == nil {
		t.Fatal("opened without credentials: the test server must refuse anonymous requests for this test to mean anything")
	}
	if err := open(file); err != nil {
		t.Fatalf("with the shared credentials file: %v", err)
	}
	if err := open(filepath.Join(t.TempDir(), "missing")); err == nil || !strings.Contains(err.Error(), "AWS_SHARED_CREDENTIALS_FILE") {
		t.Errorf("a missing file: %v, want an error naming AWS_SHARED_CREDENTIALS_FILE", err)
	}
}
