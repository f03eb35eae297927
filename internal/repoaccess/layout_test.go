package repoaccess_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/config/rbac"
	"github.com/ferry-backup/ferry/internal/repoaccess"
	"github.com/ferry-backup/ferry/internal/repository"
	"github.com/ferry-backup/ferry/internal/testenv"
)

// layoutFixture is an install namespace with the password Secret and a filesystem location
// "default" (bucket b, prefix cluster-a) whose own repository exists.
type layoutFixture struct {
	ns, root      string
	server, agent *repoaccess.Access
}

func newLayoutFixture(t *testing.T) *layoutFixture {
	t.Helper()
	env := testenv.Get(t)
	f := &layoutFixture{ns: testenv.Namespace(t, "layout"), root: t.TempDir()}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: repoaccess.PasswordSecret},
		Data: map[string][]byte{repoaccess.PasswordKey: []byte("static-passw0rd")}}
	bsl := &velerov1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "default"},
		Spec: velerov1.BackupStorageLocationSpec{Provider: velerov1.ProviderFilesystem, Config: map[string]string{"path": f.root},
			StorageType: velerov1.StorageType{ObjectStorage: &velerov1.ObjectStorageLocation{Bucket: "b", Prefix: "cluster-a"}}}}
	for _, obj := range []client.Object{secret, bsl} {
		if err := env.Client.Create(t.Context(), obj); err != nil {
			t.Fatal(err)
		}
	}
	f.server = repoaccess.New(repoaccess.Options{Client: env.Client, Namespace: f.ns, WorkDir: t.TempDir(), Create: true,
		Identity: repository.Identity{Hostname: "ferry", Username: "server"}})
	f.agent = repoaccess.New(repoaccess.Options{Client: env.Client, Namespace: f.ns, WorkDir: t.TempDir(), Identity: repoaccess.AgentIdentity})
	t.Cleanup(func() { f.server.Close(context.Background()); f.agent.Close(context.Background()) })
	_, release, err := f.server.Open(t.Context(), "default", repoaccess.ForBackup)
	if err != nil {
		t.Fatal(err)
	}
	release()
	return f
}

// veleroRepository creates a BackupRepository as Velero 1.18's server does for the first backup
// of a namespace's volumes to a location.
func (f *layoutFixture) veleroRepository(t *testing.T, namespace string) {
	t.Helper()
	br := &velerov1.BackupRepository{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: namespace + "-default-kopia",
		Labels: map[string]string{"velero.io/volume-namespace": namespace, velerov1.LabelStorageLocation: "default",
			"velero.io/repository-type": "kopia"}},
		Spec: velerov1.BackupRepositorySpec{VolumeNamespace: namespace, BackupStorageLocation: "default", RepositoryType: "kopia"}}
	if err := testenv.Get(t).Client.Create(t.Context(), br); err != nil {
		t.Fatal(err)
	}
}

func (f *layoutFixture) annotate(t *testing.T, layout string) {
	t.Helper()
	bsl := &velerov1.BackupStorageLocation{}
	c := testenv.Get(t).Client
	if err := c.Get(t.Context(), client.ObjectKey{Namespace: f.ns, Name: "default"}, bsl); err != nil {
		t.Fatal(err)
	}
	bsl.Annotations = map[string]string{repoaccess.LayoutAnnotation: layout}
	if err := c.Update(t.Context(), bsl); err != nil {
		t.Fatal(err)
	}
}

func open(t *testing.T, a *repoaccess.Access, namespace string) *repository.Repository {
	t.Helper()
	rep, release, err := a.OpenFor(t.Context(), "default", namespace, repoaccess.ForBackup)
	if err != nil {
		t.Fatalf("open the repository of namespace %s: %v", namespace, err)
	}
	t.Cleanup(release)
	return rep
}

// A namespace has Velero's layout once a Kopia BackupRepository of the location records it, as
// Velero's server creates one: its volumes then go to <prefix>/kopia/<namespace>/, written as
// default@default, through one handle per (location, namespace); other namespaces keep the
// location's repository and identity.
func TestVelerosBackupRepositoryChoosesTheNamespaceRepository(t *testing.T) {
	f := newLayoutFixture(t)
	before := open(t, f.agent, "app")
	if before.Location().Namespace != "" {
		t.Fatalf("without a BackupRepository for app, OpenFor opened %s", before.Location())
	}
	f.veleroRepository(t, "app")
	created := open(t, f.server, "app")
	if want := filepath.Join(f.root, "b", "cluster-a", "kopia", "app"); created.Location().String() != "filesystem:"+want || !created.Created() {
		t.Fatalf("the server opened %s (created %t), want a new repository at %s", created.Location(), created.Created(), want)
	}
	rep := open(t, f.agent, "app")
	if co := rep.ClientOptions(); co.Hostname != "default" || co.Username != "default" {
		t.Errorf("namespace repository opened as %s@%s, want Velero's default@default", co.Username, co.Hostname)
	}
	if again := open(t, f.agent, "app"); again != rep {
		t.Error("a second open of the same namespace repository opened another handle")
	}
	if own := open(t, f.agent, ""); own == rep || own.Location().Namespace != "" || own.ClientOptions().Hostname != "ferry" {
		t.Errorf("the location's own repository is %s as %s, want the location's, as the agent", own.Location(), own.ClientOptions().Hostname)
	}
	if other := open(t, f.agent, "other"); other.Location().Namespace != "" {
		t.Errorf("namespace other, without a BackupRepository, opened %s", other.Location())
	}
}

// The location's annotation overrides: ferry keeps every namespace in the location's repository
// even where Velero's BackupRepository exists; velero sends a namespace without one to its own
// repository (which the node-agent never creates); anything else is refused, naming it.
func TestLayoutAnnotation(t *testing.T) {
	f := newLayoutFixture(t)
	f.veleroRepository(t, "app")
	f.annotate(t, repoaccess.LayoutFerry)
	if rep := open(t, f.agent, "app"); rep.Location().Namespace != "" {
		t.Errorf("layout ferry: namespace app opened %s", rep.Location())
	}
	f.annotate(t, repoaccess.LayoutVelero)
	_, _, err := f.agent.OpenFor(t.Context(), "default", "other", repoaccess.ForBackup)
	if !errors.Is(err, repository.ErrNotInitialized) || !strings.Contains(err.Error(), "kopia/other") {
		t.Errorf("layout velero: the agent's open of namespace other = %v, want no repository at kopia/other", err)
	}
	f.annotate(t, "per-namespace")
	if _, _, err := f.agent.OpenFor(t.Context(), "default", "app", repoaccess.ForBackup); err == nil || !strings.Contains(err.Error(), repoaccess.LayoutAnnotation) {
		t.Errorf("an unknown layout opened with %v, want an error naming %s", err, repoaccess.LayoutAnnotation)
	}
}

// A password change re-keys the namespace repositories of the location too: after it, the new
// password opens them.
func TestRekeyCoversNamespaceRepositories(t *testing.T) {
	f := newLayoutFixture(t)
	f.veleroRepository(t, "app")
	open(t, f.server, "app")
	done, err := f.server.Rekey(t.Context(), "default", "static-passw0rd", "a-new-password")
	if err != nil || !done {
		t.Fatalf("Rekey = %t, %v", done, err)
	}
	c := testenv.Get(t).Client
	secret := &corev1.Secret{}
	if err := c.Get(t.Context(), client.ObjectKey{Namespace: f.ns, Name: repoaccess.PasswordSecret}, secret); err != nil {
		t.Fatal(err)
	}
	secret.Data[repoaccess.PasswordKey] = []byte("a-new-password")
	if err := c.Update(t.Context(), secret); err != nil {
		t.Fatal(err)
	}
	fresh := repoaccess.New(repoaccess.Options{Client: c, Namespace: f.ns, WorkDir: t.TempDir()})
	defer fresh.Close(context.Background())
	for _, ns := range []string{"", "app"} {
		if _, release, err := fresh.OpenFor(t.Context(), "default", ns, repoaccess.ForRestore); err != nil {
			t.Errorf("after the re-key, namespace %q: %v", ns, err)
		} else {
			release()
		}
	}
	if _, err := os.Stat(filepath.Join(f.root, "b", "cluster-a", "kopia", "app", "kopia.repository.f")); err != nil {
		t.Error(err)
	}
}

// Node-agents and mover pods list BackupRepositories to choose the layout.
func TestAgentsMayListBackupRepositories(t *testing.T) {
	for _, role := range []string{"node-agent", "datamover"} {
		rules, err := rbac.For(role)
		if err != nil {
			t.Fatal(err)
		}
		ok := false
		for _, r := range rules.Namespace {
			ok = ok || slices.Contains(r.Resources, "backuprepositories") && slices.Contains(r.Verbs, "list")
		}
		if !ok {
			t.Errorf("%s may not list backuprepositories", role)
		}
	}
}

// LayoutOf answers as OpenFor chooses: the annotation first, else a BackupRepository recording
// the namespace.
func TestLayoutOfFollowsTheAnnotationElseTheBackupRepositories(t *testing.T) {
	f := newLayoutFixture(t)
	c := testenv.Get(t).Client
	layoutOf := func(namespace string) string {
		t.Helper()
		bsl := &velerov1.BackupStorageLocation{}
		if err := c.Get(t.Context(), client.ObjectKey{Namespace: f.ns, Name: "default"}, bsl); err != nil {
			t.Fatal(err)
		}
		layout, err := repoaccess.LayoutOf(t.Context(), c, bsl, namespace)
		if err != nil {
			t.Fatal(err)
		}
		return layout
	}
	f.veleroRepository(t, "app")
	for _, tc := range []struct{ annotation, namespace, want string }{
		{"", "app", repoaccess.LayoutVelero},
		{"", "other", repoaccess.LayoutFerry},
		{repoaccess.LayoutVelero, "other", repoaccess.LayoutVelero},
		{repoaccess.LayoutFerry, "app", repoaccess.LayoutFerry},
	} {
		if tc.annotation != "" {
			f.annotate(t, tc.annotation)
		}
		if got := layoutOf(tc.namespace); got != tc.want {
			t.Errorf("annotation %q, namespace %s: %s, want %s", tc.annotation, tc.namespace, got, tc.want)
		}
	}
	// A backup record may place a snapshot in a namespace repository that the layout no longer
	// chooses: OpenNamespace opens it all the same.
	rep, release, err := f.server.OpenNamespace(t.Context(), "default", "app", repoaccess.ForBackup)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if rep.Location().Namespace != "app" || rep.ClientOptions().Hostname != "default" {
		t.Errorf("OpenNamespace opened %s as %s", rep.Location(), rep.ClientOptions().Hostname)
	}
}
