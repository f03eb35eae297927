package e2e

import (
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/controller/backup"
)

// TestTheCLIDrivesFerryOnTheRealCluster runs every kind of `ferry` command a person runs, against
// the real cluster, without a terminal: locations, a backup followed to its end, get and describe,
// verification and maintenance (each a Job on the node), a schedule's life, a restore over
// deleted files, and deletion of the backup with its data. Each command must exit 0 and say what
// a person looks for.
func TestTheCLIDrivesFerryOnTheRealCluster(t *testing.T) {
	c, ns := story(t, "cli")
	ctx := t.Context()
	app := c.NewApp(ns)
	app.Volumes = []AppVolume{{App: "web", Dir: "/content"}}
	t.Cleanup(app.Discard)
	must(t, app.Deploy(ctx))
	must(t, app.Fill(ctx, 100, 8))
	want, err := app.Describe(ctx)
	must(t, err)

	run := func(args ...string) string {
		t.Helper()
		out, err := c.Ferry(ctx, append([]string{"-n", InstallNamespace}, args...)...)
		must(t, err)
		t.Logf("$ ferry %s\n%s", strings.Join(args, " "), indent(out))
		return out
	}
	expect := func(out string, wants ...string) {
		t.Helper()
		for _, w := range wants {
			if !strings.Contains(out, w) {
				t.Errorf("the output lacks %q", w)
			}
		}
	}
	name, repo := ns, backup.RepositoryName("default")

	expect(run("backup-location", "get"), "default", "Available")
	expect(run("backup", "create", name, "--include-namespaces", ns, "--default-volumes-to-fs-backup", "--wait"),
		"Backup "+name+" Completed")
	expect(run("backup", "get", name), name, "Completed")
	expect(run("backup", "describe", name, "--details"), name, "Completed", ns)
	// Exit 0 only when every volume was read back clean.
	run("backup", "verify", name, "--percent", "100", "--timeout", "5m")
	expect(run("backup", "describe", name), "Verified")
	expect(run("repo", "get", "-o", "wide"), repo)
	expect(run("repo", "maintain", repo, "--wait", "--timeout", "5m"), "succeeded")
	expect(run("repo", "describe", repo), repo)

	schedule := name + "-nightly"
	run("schedule", "create", schedule, "--schedule", "0 3 * * *", "--include-namespaces", ns, "--skip-immediately")
	run("schedule", "pause", schedule)
	expect(run("schedule", "get", schedule), schedule, "true")
	run("schedule", "unpause", schedule)
	expect(run("schedule", "describe", schedule), schedule, "0 3 * * *")
	run("schedule", "delete", schedule, "--confirm")

	web, err := app.Pod(ctx, "web")
	must(t, err)
	_, err = c.Exec(ctx, ns, web, "rm -rf /content/* /content/.[!.]*")
	must(t, err)
	expect(run("restore", "create", name+"-back", "--from-backup", name, "--wait"), "Completed")
	expect(run("restore", "describe", name+"-back"), "Completed")
	got, err := app.Describe(ctx)
	must(t, err)
	if diff := Compare(want, got); diff != "" {
		t.Fatalf("the volume restored with the CLI differs:\n%s", diff)
	}

	run("backup", "delete", name, "--confirm")
	b := &velerov1.Backup{}
	must(t, c.Poll(ctx, 3*time.Minute, "backup "+name+" deleted with its data", func() (bool, string, error) {
		err := c.Client.Get(ctx, client.ObjectKey{Namespace: InstallNamespace, Name: name}, b)
		if apierrors.IsNotFound(err) {
			return true, "", nil
		}
		return false, string(b.Status.Phase), err
	}))
	if out, err := c.Ferry(ctx, "-n", InstallNamespace, "backup", "get", name); err == nil {
		t.Errorf("ferry backup get of a deleted backup exited 0:\n%s", out)
	}
}
