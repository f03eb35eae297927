package datamovement

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferry-backup/ferry/api/shared"
	velerov2alpha1 "github.com/ferry-backup/ferry/api/v2alpha1"
	"github.com/ferry-backup/ferry/internal/exposer"
	"github.com/ferry-backup/ferry/internal/nodeconfig"
	"github.com/ferry-backup/ferry/internal/operation"
	"github.com/ferry-backup/ferry/internal/slot"
	"github.com/ferry-backup/ferry/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Run(m) }

// Every node-agent sees a new DataUpload and tries to accept it, each from the version its cache
// holds. Exactly one may win, whatever the interleaving: the others get a Conflict and leave it.
// Repeated, with as many agents as nodes of a large cluster accepting at once.
func TestExactlyOneAgentAcceptsADataUpload(t *testing.T) {
	env := testenv.Get(t)
	ctx := testenv.Context(t)
	ns := testenv.Namespace(t, "accept")
	const agents, rounds = 12, 20
	recorder := record.NewFakeRecorder(10 * agents * rounds)
	reconcilers := make([]*Reconciler, agents)
	for i := range reconcilers {
		reconcilers[i] = &Reconciler{Client: env.Client, Recorder: recorder, Clock: clocktesting.NewFakePassiveClock(time.Now()),
			Node: fmt.Sprintf("node-%d", i), Upload: true, Exposer: &exposer.Exposer{Namespace: ns},
			Config: func() nodeconfig.Config { c := nodeconfig.Default(); c.PrepareQueueLength = rounds; return c }}
	}
	for round := range rounds {
		du := &velerov2alpha1.DataUpload{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("du-%d", round)},
			Spec: velerov2alpha1.DataUploadSpec{SnapshotType: velerov2alpha1.SnapshotTypeCSI, SourcePVC: "data", SourceNamespace: "app",
				CSISnapshot: &velerov2alpha1.CSISnapshotSpec{VolumeSnapshot: "snap", StorageClass: "csi"}, DataMover: velerov2alpha1.DataMoverFerry,
				BackupStorageLocation: "default", OperationTimeout: shared.Duration{Duration: time.Hour}}}
		if err := env.Client.Create(ctx, du); err != nil {
			t.Fatal(err)
		}
		// Every agent starts from the same (soon stale) version.
		var wg sync.WaitGroup
		errs := make([]error, agents)
		for i, r := range reconcilers {
			stale := du.DeepCopy()
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = r.accept(ctx, viewOf(stale))
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d: agent %d: %v", round, i, err)
			}
		}
		got := &velerov2alpha1.DataUpload{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(du), got); err != nil {
			t.Fatal(err)
		}
		accepted := 0
		for range len(recorder.Events) {
			<-recorder.Events
			accepted++
		}
		if accepted != 1 || got.Status.Phase != velerov2alpha1.DataMovePhaseAccepted || got.Status.AcceptedByNode == "" ||
			len(got.Finalizers) != 1 || got.Finalizers[0] != exposer.Finalizer {
			t.Fatalf("round %d: %d agents accepted; status %s by %q, finalizers %v; want exactly one, holding the finalizer",
				round, accepted, got.Status.Phase, got.Status.AcceptedByNode, got.Finalizers)
		}
	}
}

// A cancel request read from a stale cache never overrides an outcome recorded meanwhile: the
// Canceled phase is written only if the object is still the version read.
func TestCancelFromAStaleCacheKeepsTheOutcome(t *testing.T) {
	env := testenv.Get(t)
	ctx := testenv.Context(t)
	ns := testenv.Namespace(t, "stale")
	du := &velerov2alpha1.DataUpload{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "du"},
		Spec: velerov2alpha1.DataUploadSpec{SnapshotType: velerov2alpha1.SnapshotTypeCSI, SourcePVC: "data", SourceNamespace: "app",
			CSISnapshot: &velerov2alpha1.CSISnapshotSpec{VolumeSnapshot: "snap", StorageClass: "csi"}, DataMover: velerov2alpha1.DataMoverFerry,
			BackupStorageLocation: "default", OperationTimeout: shared.Duration{Duration: time.Hour}}}
	if err := env.Client.Create(ctx, du); err != nil {
		t.Fatal(err)
	}
	if err := operation.PatchStatus(ctx, env.Client, du, map[string]any{"phase": velerov2alpha1.DataMovePhasePrepared, "acceptedByNode": "n0", "node": "n0"}); err != nil {
		t.Fatal(err)
	}
	stale := du.DeepCopy()
	stale.Spec.Cancel = true
	if err := operation.PatchStatus(ctx, env.Client, du, map[string]any{"phase": velerov2alpha1.DataMovePhaseCompleted, "snapshotID": "k1"}); err != nil {
		t.Fatal(err)
	}
	r := &Reconciler{Client: env.Client, Recorder: record.NewFakeRecorder(10), Clock: clocktesting.NewFakePassiveClock(time.Now()),
		Node: "n0", Upload: true, Exposer: &exposer.Exposer{Client: env.Client, Namespace: ns},
		Runner: operation.NewRunner(ctx, slot.New(1)), Config: nodeconfig.Default}
	if err := r.cancel(ctx, viewOf(stale)); !apierrors.IsConflict(err) {
		t.Fatalf("cancel from a stale version = %v, want a Conflict", err)
	}
	got := &velerov2alpha1.DataUpload{}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(du), got); err != nil {
		t.Fatal(err)
	}
	if got.Status.Phase != velerov2alpha1.DataMovePhaseCompleted || got.Status.SnapshotID != "k1" {
		t.Fatalf("%s, snapshot %q: the recorded outcome was overwritten", got.Status.Phase, got.Status.SnapshotID)
	}
}

// A new operation whose spec.operationTimeout is not a duration (Velero's CRDs do not check it)
// is failed by the first agent that sees it, naming the field, and never accepted.
func TestAnInvalidTimeoutFailsANewOperation(t *testing.T) {
	env := testenv.Get(t)
	ctx := testenv.Context(t)
	ns := testenv.Namespace(t, "invalid")
	dd := &velerov2alpha1.DataDownload{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "dd"},
		Spec: velerov2alpha1.DataDownloadSpec{TargetVolume: velerov2alpha1.TargetVolumeSpec{PVC: "data", Namespace: "app"},
			BackupStorageLocation: "default", DataMover: velerov2alpha1.DataMoverFerry, SnapshotID: "k1", SourceNamespace: "app",
			OperationTimeout: shared.Duration{Duration: time.Hour}}}
	if err := env.Client.Create(ctx, dd); err != nil {
		t.Fatal(err)
	}
	// Ferry's CRDs refuse the text; read as Velero's CRDs let it be stored.
	read := dd.DeepCopy()
	read.Spec.OperationTimeout = shared.Duration{Invalid: "9999999999h"}
	r := &Reconciler{Client: env.Client, Recorder: record.NewFakeRecorder(10), Clock: clocktesting.NewFakePassiveClock(time.Now()),
		Node: "n0", Exposer: &exposer.Exposer{Client: env.Client, Namespace: ns}, Config: nodeconfig.Default}
	if _, err := r.accept(ctx, viewOf(read)); err != nil {
		t.Fatal(err)
	}
	got := &velerov2alpha1.DataDownload{}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(dd), got); err != nil {
		t.Fatal(err)
	}
	if got.Status.Phase != velerov2alpha1.DataMovePhaseFailed || got.Status.AcceptedByNode != "" ||
		!strings.HasPrefix(got.Status.Message, `spec.operationTimeout: "9999999999h" is not a duration`) {
		t.Fatalf("phase %s by %q (%s), want Failed naming spec.operationTimeout, not accepted", got.Status.Phase, got.Status.AcceptedByNode, got.Status.Message)
	}
}

// An agent moves the operations of the data movers it is told to: Ferry's by default, Velero's
// too (spec.datamover velero, or empty: Velero's default) in place of Velero's node-agent.
func TestAnAgentMovesOnlyItsDataMovers(t *testing.T) {
	for _, tc := range []struct {
		movers []string
		want   map[string]bool
	}{
		{nil, map[string]bool{"ferry": true, "velero": false, "": false, "other": false}},
		{[]string{"ferry", "velero"}, map[string]bool{"ferry": true, "velero": true, "": true, "other": false}},
		{[]string{"velero"}, map[string]bool{"ferry": false, "velero": true, "": true}},
	} {
		r := &Reconciler{DataMovers: tc.movers}
		for dataMover, want := range tc.want {
			if got := r.moves(dataMover); got != want {
				t.Errorf("an agent moving %v moves spec.datamover %q: %v, want %v", tc.movers, dataMover, got, want)
			}
		}
	}
}

// The pod cache holds every pod on the node; a mover pod of Velero's own data mover, owned by a
// DataUpload in Velero's namespace, must not become a request for an operation this agent's
// cache does not hold (each was an error and a retry with backoff for as long as the pod lived).
func TestOnlyTheAgentsOwnMoverPodsWakeItsOperations(t *testing.T) {
	r := &Reconciler{Exposer: &exposer.Exposer{Namespace: "velero"}}
	owner := []metav1.OwnerReference{{APIVersion: "velero.io/v2alpha1", Kind: "DataUpload", Name: "nightly-x7k2p", UID: "u1"}}
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
		want bool
	}{
		{"Ferry's mover pod", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "velero", Name: "nightly-x7k2p",
			Labels: map[string]string{exposer.LabelOperation: "u1"}, OwnerReferences: owner}}, true},
		{"Velero's mover pod in Velero's namespace", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "velero-oss", Name: "nightly-x7k2p",
			Labels: map[string]string{"velero.io/data-upload": "nightly-x7k2p"}, OwnerReferences: owner}}, false},
		{"a pod labelled as Ferry's in another namespace", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "app",
			Labels: map[string]string{exposer.LabelOperation: "u1"}, OwnerReferences: owner}}, false},
		{"an unlabelled pod in the agent's namespace", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "velero", OwnerReferences: owner}}, false},
	} {
		if got := r.isOwnMoverPod(tc.pod); got != tc.want {
			t.Errorf("%s: isOwnMoverPod = %v, want %v", tc.name, got, tc.want)
		}
	}
}
