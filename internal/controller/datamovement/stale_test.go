package datamovement

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov2alpha1 "github.com/ferry-backup/ferry/api/v2alpha1"
	"github.com/ferry-backup/ferry/internal/exposer"
	"github.com/ferry-backup/ferry/internal/testenv"
)

// A mover pod the scheduler parked on its claim ("unbound immediate PersistentVolumeClaims")
// is made again once the claim is bound (the scheduler would look at it again only minutes
// later); while the claim is not bound, or for another reason, it is reported after the grace.
func TestAMoverPodParkedOnAClaimBoundSinceIsMadeAgain(t *testing.T) {
	env, ctx := testenv.Get(t).Client, testenv.Context(t)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "stale-"}}
	if err := env.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	e := &exposer.Exposer{Client: env, Namespace: ns.Name}
	unschedulable := func(name, message string, since time.Time) exposer.Operation {
		t.Helper()
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: name},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: exposer.MoverContainer, Image: "mover"}}}}
		if err := env.Create(ctx, pod); err != nil {
			t.Fatal(err)
		}
		pod.Status.Phase = corev1.PodPending
		pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse,
			Reason: corev1.PodReasonUnschedulable, Message: message, LastTransitionTime: metav1.NewTime(since)}}
		if err := env.Status().Update(ctx, pod); err != nil {
			t.Fatal(err)
		}
		claim := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: name},
			Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}}}
		if err := env.Create(ctx, claim); err != nil {
			t.Fatal(err)
		}
		return exposer.Operation{Owner: &velerov2alpha1.DataUpload{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: name}}, Upload: true}
	}
	bind := func(op exposer.Operation) {
		t.Helper()
		claim := &corev1.PersistentVolumeClaim{}
		if err := env.Get(ctx, client.ObjectKey{Namespace: ns.Name, Name: op.Owner.GetName()}, claim); err != nil {
			t.Fatal(err)
		}
		claim.Status.Phase = corev1.ClaimBound
		if err := env.Status().Update(ctx, claim); err != nil {
			t.Fatal(err)
		}
	}
	const parked = `0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims. not found`
	now := time.Now()

	stale := unschedulable("parked", parked, now.Add(-20*time.Second))
	if st, err := e.Inspect(ctx, stale, now); err != nil || st.Stale || st.Problem != "" {
		t.Errorf("parked while its claim is pending, 20 s: %+v, %v; want nothing yet", st, err)
	}
	bind(stale)
	if st, err := e.Inspect(ctx, stale, now); err != nil || !st.Stale || st.Problem != "" {
		t.Errorf("parked, its claim bound since: %+v, %v; want stale", st, err)
	}
	if st, err := e.Inspect(ctx, stale, now.Add(-10*time.Second)); err != nil || st.Stale {
		t.Errorf("parked for 10 s only: %+v, %v; want the scheduler's own retry first", st, err)
	}

	full := unschedulable("full", "0/1 nodes are available: 1 Insufficient cpu.", now.Add(-2*time.Minute))
	bind(full)
	if st, err := e.Inspect(ctx, full, now); err != nil || st.Stale || st.Problem == "" {
		t.Errorf("unschedulable for want of CPU: %+v, %v; want a problem, not a new pod", st, err)
	}
}
