package backup

import (
	"strings"
	"testing"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/testenv"
)

// This API server has no snapshot API (testenv.Run installs Ferry's CRDs only).
func TestMain(m *testing.M) { testenv.Run(m) }

func TestClassFor(t *testing.T) {
	class := func(name, driver string, isDefault bool) snapshotv1.VolumeSnapshotClass {
		c := snapshotv1.VolumeSnapshotClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Driver: driver}
		if isDefault {
			c.Annotations = map[string]string{AnnotationDefaultSnapshotClass: "true"}
		}
		return c
	}
	support := &snapshotSupport{
		storageClasses: map[string]*storagev1.StorageClass{
			"fast":  {ObjectMeta: metav1.ObjectMeta{Name: "fast"}, Provisioner: "fast.csi"},
			"twice": {ObjectMeta: metav1.ObjectMeta{Name: "twice"}, Provisioner: "twice.csi"},
			"plain": {ObjectMeta: metav1.ObjectMeta{Name: "plain"}, Provisioner: "plain.csi"},
		},
		snapshotClass: []snapshotv1.VolumeSnapshotClass{
			class("fast-default", "fast.csi", true), class("fast-other", "fast.csi", false), class("plain-other", "plain.csi", false),
			class("twice-a", "twice.csi", true), class("twice-b", "twice.csi", true), class("elsewhere-default", "other.csi", true),
		},
	}
	pvc := func(storageClass, label string) *corev1.PersistentVolumeClaim {
		p := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "data"}}
		if storageClass != "" {
			p.Spec.StorageClassName = &storageClass
		}
		if label != "" {
			p.Labels = map[string]string{velerov1.LabelVolumeSnapshotClass: label}
		}
		return p
	}
	for _, tc := range []struct {
		name      string
		pvc       *corev1.PersistentVolumeClaim
		wantClass string
		reason    string
	}{
		{"the default class of the driver", pvc("fast", ""), "fast-default", ""},
		{"the class the label names", pvc("fast", "fast-other"), "fast-other", ""},
		{"a labelled class of another driver", pvc("fast", "plain-other"), "", "is for driver plain.csi, not fast.csi"},
		{"a labelled class that does not exist", pvc("fast", "gone"), "", "VolumeSnapshotClass gone that its label velero.io/csi-volumesnapshot-class names does not exist"},
		{"a driver with only a non-default class", pvc("plain", ""), "", "no VolumeSnapshotClass of driver plain.csi (storage class plain) is annotated"},
		{"a driver with two defaults", pvc("twice", ""), "", "2 VolumeSnapshotClasses of driver twice.csi are annotated snapshot.storage.kubernetes.io/is-default-class=true (twice-a, twice-b)"},
		{"no storage class", pvc("", ""), "", "no storage class"},
		{"a storage class that does not exist", pvc("gone", ""), "", "storage class gone does not exist"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, reason := support.classFor(tc.pvc)
			if c.SnapshotClass != tc.wantClass {
				t.Errorf("snapshot class %q, want %q (reason %q)", c.SnapshotClass, tc.wantClass, reason)
			}
			if (tc.reason == "") != (reason == "") || !strings.Contains(reason, tc.reason) {
				t.Errorf("reason %q, want one containing %q", reason, tc.reason)
			}
			if tc.wantClass != "" && c.Driver != support.storageClasses[*tc.pvc.Spec.StorageClassName].Provisioner {
				t.Errorf("driver %q", c.Driver)
			}
		})
	}
}

// Without the snapshot API in the cluster, no claim has a snapshot class, and the reason says
// why; nothing fails.
func TestNoSnapshotAPIMeansNoSnapshotClass(t *testing.T) {
	env := testenv.Get(t)
	r := &Reconciler{Cluster: env.Client}
	support, err := r.snapshotSupport(testenv.Context(t))
	if err != nil {
		t.Fatalf("snapshot support without the snapshot API: %v", err)
	}
	fast := "fast"
	_, reason := support.classFor(&corev1.PersistentVolumeClaim{Spec: corev1.PersistentVolumeClaimSpec{StorageClassName: &fast}})
	if !strings.Contains(reason, "snapshot API (snapshot.storage.k8s.io/v1 VolumeSnapshotClass) is not installed") {
		t.Errorf("reason %q", reason)
	}
}
