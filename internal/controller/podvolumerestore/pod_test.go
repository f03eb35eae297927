package podvolumerestore

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/ferry-backup/ferry/api/shared"
	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/nodeconfig"
	"github.com/ferry-backup/ferry/internal/operation"
	"github.com/ferry-backup/ferry/internal/podvolume"
	"github.com/ferry-backup/ferry/internal/repoaccess"
	"github.com/ferry-backup/ferry/internal/scheme"
	"github.com/ferry-backup/ferry/internal/slot"
	"github.com/ferry-backup/ferry/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Run(m) }

const node = "node-a"

type fixture struct {
	t     *testing.T
	c     client.Client
	r     *Reconciler
	clock *clocktesting.FakePassiveClock
	ns    string // the install namespace, also the pod's
}

// newFixture returns a reconciler of node-a; with a manager, it runs under a manager whose cache
// watches this node's pods as the node-agent's does.
func newFixture(t *testing.T, withManager bool) *fixture {
	env := testenv.Get(t)
	ctx := testenv.Context(t)
	nsObj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "pvr-wait-"}}
	if err := env.Client.Create(ctx, nsObj); err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, c: env.Client, ns: nsObj.Name, clock: clocktesting.NewFakePassiveClock(time.Now())}
	runner := operation.NewRunner(ctx, slot.New(1))
	t.Cleanup(runner.Wait)
	f.r = &Reconciler{Client: env.Client, Recorder: record.NewFakeRecorder(100), Clock: f.clock, Node: node,
		Volumes:      podvolume.Locator{Client: env.Client, Node: node, Root: t.TempDir()},
		Repositories: repoaccess.New(repoaccess.Options{Client: env.Client, Namespace: f.ns, WorkDir: t.TempDir()}),
		Runner:       runner, Config: nodeconfig.Default}
	if !withManager {
		return f
	}
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{Scheme: scheme.New(), Metrics: metricsserver.Options{BindAddress: "0"},
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
			&velerov1.PodVolumeRestore{}: {Namespaces: map[string]cache.Config{f.ns: {}}},
			&corev1.Pod{}:                {Field: fields.OneTermEqualSelector("spec.nodeName", node)},
		}}})
	if err != nil {
		t.Fatal(err)
	}
	r := *f.r
	r.Client = mgr.GetClient()
	if err := r.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	go func() {
		if err := mgr.Start(ctx); err != nil {
			t.Errorf("manager: %v", err)
		}
	}()
	return f
}

// restoreAndPod creates, as Velero's server does, an unscheduled pod with the restore-wait init
// container and a PodVolumeRestore without spec.node targeting it.
func (f *fixture) restoreAndPod(timeout time.Duration) (*velerov1.PodVolumeRestore, *corev1.Pod) {
	ctx := testenv.Context(f.t)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "web"}, Spec: corev1.PodSpec{
		InitContainers: []corev1.Container{{Name: restoreWait, Image: "velero/velero-restore-helper"}},
		Containers:     []corev1.Container{{Name: "app", Image: "app"}},
		Volumes:        []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
	}}
	if err := f.c.Create(ctx, pod); err != nil {
		f.t.Fatal(err)
	}
	pvr := &velerov1.PodVolumeRestore{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "restore-web-data"},
		Spec: velerov1.PodVolumeRestoreSpec{Volume: "data", BackupStorageLocation: "default", SnapshotID: "k0123",
			Pod:              corev1.ObjectReference{Kind: "Pod", Namespace: f.ns, Name: "web", UID: pod.UID},
			OperationTimeout: &shared.Duration{Duration: timeout}}}
	if err := f.c.Create(ctx, pvr); err != nil {
		f.t.Fatal(err)
	}
	return pvr, pod
}

// reconcileWaits reconciles once and requires the restore still New, to be looked at again no
// later than its timeout.
func (f *fixture) reconcileWaits(pvr *velerov1.PodVolumeRestore, why string) {
	f.t.Helper()
	ctx := testenv.Context(f.t)
	res, err := f.r.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(pvr)})
	if err != nil || res.RequeueAfter <= 0 {
		f.t.Fatalf("%s: reconcile = %+v, %v; want a requeue before the timeout", why, res, err)
	}
	if err := f.c.Get(ctx, client.ObjectKeyFromObject(pvr), pvr); err != nil {
		f.t.Fatal(err)
	}
	if pvr.Status.Phase != "" {
		f.t.Fatalf("%s: the restore is %s (%s), want it still New", why, pvr.Status.Phase, pvr.Status.Message)
	}
}

func (f *fixture) schedule(pod *corev1.Pod) {
	f.t.Helper()
	binding := &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: pod.Name},
		Target: corev1.ObjectReference{Kind: "Node", Name: node}}
	if err := f.c.SubResource("binding").Create(testenv.Context(f.t), pod, binding); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) restoreWaitRunning(pod *corev1.Pod) {
	f.t.Helper()
	ctx := testenv.Context(f.t)
	if err := f.c.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
		f.t.Fatal(err)
	}
	pod.Status.Phase = corev1.PodPending
	pod.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: restoreWait, Image: "velero/velero-restore-helper",
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}}}}
	if err := f.c.Status().Update(ctx, pod); err != nil {
		f.t.Fatal(err)
	}
}

// Velero creates the PodVolumeRestore right after the pod, before the pod is scheduled. The
// restore waits while the pod is on no node and while its restore-wait init container has not
// started (its volumes are not mounted), and starts, woken by the pod's change, once it runs.
func TestRestoreStartsOnceItsPodIsScheduledAndRestoreWaitRuns(t *testing.T) {
	f := newFixture(t, true)
	pvr, pod := f.restoreAndPod(time.Hour)
	f.reconcileWaits(pvr, "pod not scheduled")
	f.schedule(pod)
	f.reconcileWaits(pvr, "restore-wait not running")

	f.restoreWaitRunning(pod)
	ctx := testenv.Context(t)
	deadline := time.Now().Add(30 * time.Second)
	for pvr.Status.Phase == "" {
		if time.Now().After(deadline) {
			t.Fatal("the restore did not start after its pod's restore-wait container began running")
		}
		time.Sleep(50 * time.Millisecond) // polling the API server, not waiting for an event to happen
		if err := f.c.Get(ctx, client.ObjectKeyFromObject(pvr), pvr); err != nil {
			t.Fatal(err)
		}
	}
	// Without a location in this namespace the restore fails once started; started is what counts.
	if pvr.Status.Node != node || pvr.Status.AcceptedTimestamp == nil {
		t.Errorf("the restore did not start on %s: %+v", node, pvr.Status)
	}
}

// A restore whose pod never gets its volumes mounted fails at its timeout, saying what it waited for.
func TestRestoreTimesOutWaitingForItsPod(t *testing.T) {
	f := newFixture(t, false)
	pvr, pod := f.restoreAndPod(time.Minute)
	f.schedule(pod)
	f.reconcileWaits(pvr, "restore-wait not running")
	f.clock.SetTime(pvr.CreationTimestamp.Add(time.Minute + time.Second))
	ctx := testenv.Context(t)
	if _, err := f.r.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(pvr)}); err != nil {
		t.Fatal(err)
	}
	if err := f.c.Get(ctx, client.ObjectKeyFromObject(pvr), pvr); err != nil {
		t.Fatal(err)
	}
	if pvr.Status.Phase != velerov1.PodVolumePhaseFailed || !strings.Contains(pvr.Status.Message, "timed out after 1m0s") ||
		!strings.Contains(pvr.Status.Message, "init container restore-wait") {
		t.Errorf("status %s %q, want Failed, timed out waiting for restore-wait", pvr.Status.Phase, pvr.Status.Message)
	}
}
