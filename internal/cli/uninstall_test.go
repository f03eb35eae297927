package cli

import (
	"context"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/testenv"
)

// The test control plane has no kube-controller-manager: no garbage collector, no namespace
// controller. Deployments make no pods and a deleted namespace stays Terminating. The CRDs are
// shared by every test of this binary: only TestUninstallRemovesTheCRDs deletes them, and it
// installs them again before it ends.

// installed runs `ferry install` into ns and adds the password Secret ferry-server would create.
func installed(t *testing.T, ns string) []client.Object {
	t.Helper()
	if out, err := ferry(t, "install", "--namespace", ns); err != nil {
		t.Fatalf("install: %v\n%s", err, out)
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: passwordSecret},
		StringData: map[string]string{"repository-password": "not-a-real-one"}}
	if err := testenv.Get(t).Client.Create(testenv.Context(t), secret); err != nil {
		t.Fatal(err)
	}
	objs, err := workloads{Namespace: ns}.manifests()
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// legacyDaemonSet creates the node-agent DaemonSet as an older Ferry named it.
func legacyDaemonSet(t *testing.T, ns string) *appsv1.DaemonSet {
	t.Helper()
	labels := map[string]string{"app.kubernetes.io/name": nodeAgentName, "name": "node-agent"}
	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: legacyNodeAgentDaemonSetName},
		Spec: appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: labels},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: nodeAgentName, Image: "registry.example/ferry:v0"}}}}}}
	if err := testenv.Get(t).Client.Create(testenv.Context(t), ds); err != nil {
		t.Fatal(err)
	}
	return ds
}

// backup creates a Backup with finalizers and removes it when the test ends.
func backup(t *testing.T, ns, name string, finalizers ...string) *velerov1.Backup {
	t.Helper()
	c := testenv.Get(t).Client
	b := &velerov1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Finalizers: finalizers}}
	if err := c.Create(testenv.Context(t), b); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		_ = c.Patch(ctx, b, noFinalizers)
		_ = c.Delete(ctx, b)
	})
	return b
}

var noFinalizers = client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`))

// present returns the objects that exist.
func present(t *testing.T, objs ...client.Object) []string {
	t.Helper()
	env := testenv.Get(t)
	var there []string
	for _, obj := range objs {
		err := env.Client.Get(testenv.Context(t), client.ObjectKeyFromObject(obj), obj.DeepCopyObject().(client.Object))
		if err == nil {
			there = append(there, describe(obj))
		} else if !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
	}
	return there
}

func ferryCRDs(t *testing.T) []client.Object {
	t.Helper()
	objs, err := crdObjects()
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// TestUninstallRemovesWhatInstallCreated uninstalls with --keep-crds: every object install made
// in and for the namespace is gone, the server's finalizers are stripped from Backups (a deleted
// one can go), and the namespace with the password Secret stays. A second uninstall finds nothing.
func TestUninstallRemovesWhatInstallCreated(t *testing.T) {
	env := testenv.Get(t)
	ctx := testenv.Context(t)
	const ns = "ferry-uninstall-test"
	objs := installed(t, ns)
	deleted := backup(t, ns, "deleted", velerov1.FinalizerUnfinished)
	if err := env.Client.Delete(ctx, deleted); err != nil {
		t.Fatal(err)
	}
	kept := backup(t, ns, "kept", legacyBackupFinalizer, velerov1.FinalizerUnfinished, "example.com/other")
	// An older Ferry's agent, left beside the new one (ferry install of this version deletes it).
	legacy := legacyDaemonSet(t, ns)
	objs = append(objs, legacy)
	// A maintenance Job of ferry-server's goes; someone else's Job in the namespace stays.
	maintain, other := job(t, ns, "default-kopia-maintain-x7k2p", true), job(t, ns, "someone-elses", false)
	objs = append(objs, maintain)

	out, err := ferry(t, "uninstall", "--namespace", ns, "--keep-crds", "--wait", "30s")
	if err != nil {
		t.Fatalf("uninstall: %v\n%s", err, out)
	}
	t.Logf("uninstall:\n%s", out)
	if there := present(t, objs...); len(there) > 0 {
		t.Errorf("still there after uninstall: %v", there)
	}
	for _, line := range []string{`deployment.apps "ferry-server" deleted`, `daemonset.apps "node-agent" deleted`,
		`daemonset.apps "ferry-node-agent" deleted`,
		`clusterrolebinding.rbac.authorization.k8s.io "ferry-node-agent-` + ns + `" deleted`, `serviceaccount "ferry-server" deleted`,
		`job.batch "default-kopia-maintain-x7k2p" deleted`,
		`backup.velero.io "kept" in namespace ` + ns + `: finalizer ` + legacyBackupFinalizer + ` removed`,
		`backup.velero.io "kept" in namespace ` + ns + `: finalizer ` + velerov1.FinalizerUnfinished + ` removed`,
		"namespace " + ns + " kept: it holds the repository password Secret " + passwordSecret} {
		if !strings.Contains(out, line) {
			t.Errorf("output lacks %q:\n%s", line, out)
		}
	}
	if there := present(t, other); len(there) != 1 {
		t.Errorf("uninstall deleted a Job that is not Ferry's")
	}
	if there := present(t, deleted); len(there) > 0 {
		t.Errorf("the deleted Backup still waits for its finalizer")
	}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(kept), kept); err != nil || !slicesEqual(kept.Finalizers, "example.com/other") {
		t.Errorf("Backup kept: finalizers %v (%v), want only example.com/other", kept.Finalizers, err)
	}
	namespace := &corev1.Namespace{}
	if err := env.Client.Get(ctx, client.ObjectKey{Name: ns}, namespace); err != nil || namespace.DeletionTimestamp != nil {
		t.Errorf("namespace: deletionTimestamp %v, %v; want it kept", namespace.DeletionTimestamp, err)
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: passwordSecret}}
	if there := present(t, append(ferryCRDs(t), secret)...); len(there) != len(ferryCRDs(t))+1 {
		t.Errorf("uninstall --keep-crds left only %v of the CRDs and the password Secret", there)
	}

	out, err = ferry(t, "uninstall", "--namespace", ns, "--keep-crds")
	t.Logf("second uninstall:\n%s", out)
	if err != nil || !strings.Contains(out, "nothing left to uninstall") {
		t.Errorf("second uninstall: %v\n%s", err, out)
	}
}

// job creates a Job in ns, labelled as ferry-server labels its Jobs when ours.
func job(t *testing.T, ns, name string, ours bool) *batchv1.Job {
	t.Helper()
	labels := map[string]string{"app.kubernetes.io/name": "ferry-maintenance", "app.kubernetes.io/part-of": "ferry"}
	if !ours {
		labels = map[string]string{"app": "reports"}
	}
	never := corev1.RestartPolicyNever
	j := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels}, Spec: batchv1.JobSpec{
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
			Spec: corev1.PodSpec{RestartPolicy: never, Containers: []corev1.Container{{Name: "c", Image: "img"}}}}}}
	if err := testenv.Get(t).Client.Create(testenv.Context(t), j); err != nil {
		t.Fatal(err)
	}
	return j
}

func slicesEqual(got []string, want ...string) bool {
	return strings.Join(got, ",") == strings.Join(want, ",")
}

// TestUninstallDryRunDeletesNothing lists what would go, the CRDs and the namespace included,
// and leaves everything as it was.
func TestUninstallDryRunDeletesNothing(t *testing.T) {
	env := testenv.Get(t)
	const ns = "ferry-uninstall-dry-run"
	objs := installed(t, ns)
	b := backup(t, ns, "legacy", legacyBackupFinalizer)

	out, err := ferry(t, "uninstall", "--namespace", ns, "--dry-run", "--delete-namespace")
	if err != nil {
		t.Fatalf("uninstall --dry-run: %v\n%s", err, out)
	}
	for _, line := range []string{`deployment.apps "ferry-server" deleted (server dry run)`,
		`customresourcedefinition.apiextensions.k8s.io "backups.velero.io" deleted (server dry run)`,
		`finalizer ` + legacyBackupFinalizer + ` removed, its data stays in the repository (server dry run)`,
		`namespace "` + ns + `" deleted (server dry run)`} {
		if !strings.Contains(out, line) {
			t.Errorf("output lacks %q:\n%s", line, out)
		}
	}
	all := append(append(objs, ferryCRDs(t)...), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	if there := present(t, all...); len(there) != len(all) {
		t.Errorf("a dry run deleted something: %d of %d objects left", len(there), len(all))
	}
	if err := env.Client.Get(testenv.Context(t), client.ObjectKeyFromObject(b), b); err != nil || !slicesEqual(b.Finalizers, legacyBackupFinalizer) {
		t.Errorf("a dry run changed the Backup's finalizers: %v (%v)", b.Finalizers, err)
	}
}

// TestUninstallWaitsForThePods stops at the pods: a pod of the node-agent that nobody deletes
// (here no garbage collector runs) is named in the error, and nothing after it is deleted.
func TestUninstallWaitsForThePods(t *testing.T) {
	env := testenv.Get(t)
	ctx := testenv.Context(t)
	const ns = "ferry-uninstall-pods"
	objs := installed(t, ns)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ferry-node-agent-x7k2p", Labels: map[string]string{"app.kubernetes.io/name": nodeAgentName}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: nodeAgentName, Image: "registry.example/ferry:v1"}}},
	}
	if err := env.Client.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}

	_, err := ferry(t, "uninstall", "--namespace", ns, "--keep-crds", "--wait", "1s")
	if err == nil || !strings.Contains(err.Error(), `pod "ferry-node-agent-x7k2p" in namespace `+ns) {
		t.Fatalf("want an error naming the pod left, got %v", err)
	}
	if there := present(t, objs...); len(there) != len(objs)-2 {
		t.Errorf("want only the Deployment and the DaemonSet gone while the pods run, left: %v", there)
	}

	if err := env.Client.Delete(ctx, pod); err != nil {
		t.Fatal(err)
	}
	if out, err := ferry(t, "uninstall", "--namespace", ns, "--keep-crds", "--wait", "30s"); err != nil {
		t.Fatalf("uninstall once the pod is gone: %v\n%s", err, out)
	}
	if there := present(t, objs...); len(there) > 0 {
		t.Errorf("still there after uninstall: %v", there)
	}
}

// TestUninstallDeleteNamespace deletes the namespace with a warning about the password Secret.
// No namespace controller runs here, so the namespace stays Terminating and --wait ends with an
// error that names it and the finalizer that holds it.
func TestUninstallDeleteNamespace(t *testing.T) {
	env := testenv.Get(t)
	const ns = "ferry-uninstall-namespace"
	installed(t, ns)

	out, err := ferry(t, "uninstall", "--namespace", ns, "--keep-crds", "--delete-namespace", "--wait", "1s")
	if err == nil || !strings.Contains(err.Error(), `namespace "`+ns+`" (terminating; spec.finalizers: kubernetes)`) {
		t.Errorf("want an error naming the namespace left and its finalizer, got %v", err)
	}
	if want := "kubectl get secret -n " + ns + " " + passwordSecret + " -o yaml"; !strings.Contains(out, want) {
		t.Errorf("the warning does not say how to back the password up (%q):\n%s", want, out)
	}
	namespace := &corev1.Namespace{}
	if err := env.Client.Get(testenv.Context(t), client.ObjectKey{Name: ns}, namespace); err != nil || namespace.DeletionTimestamp == nil {
		t.Errorf("namespace not being deleted: %v", err)
	}
}

// TestUninstallRemovesTheCRDs deletes the CRDs: a Backup with the legacy finalizer goes with
// them; one held by someone else's finalizer keeps the backups CRD, and --wait names both. It
// installs the CRDs again for the other tests of this binary.
func TestUninstallRemovesTheCRDs(t *testing.T) {
	env := testenv.Get(t)
	const ns = "ferry-uninstall-crds"
	objs := installed(t, ns)
	legacy := backup(t, ns, "legacy", legacyBackupFinalizer)
	held := backup(t, ns, "held", "example.com/hold")
	defer reinstallCRDs(t, ns, held) // deferred: t.Context ends before the cleanups

	_, err := ferry(t, "uninstall", "--namespace", ns, "--wait", "2s")
	// The API server marks the CRD's objects terminating in the background: "held" may or may not
	// be marked yet when --wait is over.
	want := []string{`customresourcedefinition.apiextensions.k8s.io "backups.velero.io" (terminating; finalizers: customresourcecleanup.apiextensions.k8s.io; ` +
		`held by backup.velero.io "held" in namespace ` + ns + ` (`, `finalizers: example.com/hold))`}
	if err == nil || !strings.Contains(err.Error(), want[0]) || !strings.Contains(err.Error(), want[1]) {
		t.Fatalf("want an error naming the CRD left and the Backup holding it:\n%s\ngot %v", strings.Join(want, "…"), err)
	}
	// The API server deletes the CRD's objects in the background; the legacy finalizer is
	// Ferry's to drop, which uninstall did.
	if err := poll(testenv.Context(t), "the Backup with the legacy finalizer to go with its CRD", func() bool { return len(present(t, legacy)) == 0 }); err != nil {
		t.Error(err)
	}

	if err := env.Client.Patch(testenv.Context(t), held, noFinalizers); err != nil {
		t.Fatal(err)
	}
	if out, err := ferry(t, "uninstall", "--namespace", ns, "--wait", "50s"); err != nil {
		t.Fatalf("uninstall once the Backup is free: %v\n%s", err, out)
	}
	if there := present(t, append(objs, ferryCRDs(t)...)...); len(there) > 0 {
		t.Errorf("still there after uninstall: %v", there)
	}
}

// reinstallCRDs lets the Backups go, waits until the CRDs are gone and installs them again.
func reinstallCRDs(t *testing.T, ns string, backups ...*velerov1.Backup) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, b := range backups {
		if err := testenv.Get(t).Client.Patch(ctx, b, noFinalizers); client.IgnoreNotFound(err) != nil && !meta.IsNoMatchError(err) {
			t.Errorf("let Backup %s go: %v", b.Name, err)
		}
	}
	err := wait.PollUntilContextCancel(ctx, 250*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		list := &apiextensionsv1.CustomResourceDefinitionList{}
		if err := testenv.Get(t).Client.List(ctx, list); err != nil {
			return false, err
		}
		for _, c := range list.Items {
			if c.DeletionTimestamp != nil {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Errorf("CRDs still being deleted, the other tests will fail: %v", err)
		return
	}
	if out, err := ferry(t, "install", "--crds-only", "--namespace", ns); err != nil {
		t.Errorf("install the CRDs again: %v\n%s", err, out)
	}
}
