package hostpath

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func pvc(name string) corev1.Volume {
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{
		PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "claim-" + name}}}
}

func pv(name string, csi bool) *corev1.PersistentVolume {
	p := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if csi {
		p.Spec.CSI = &corev1.CSIPersistentVolumeSource{Driver: "hostpath.csi.k8s.io"}
	}
	return p
}

func TestResolve(t *testing.T) {
	dir := &fstest.MapFile{Mode: os.ModeDir | 0o755}
	fsys := fstest.MapFS{
		"uid-1/volumes/kubernetes.io~csi/pvc-aaa/mount":          dir,
		"uid-1/volumes/kubernetes.io~empty-dir/cache":            dir,
		"uid-1/volumes/kubernetes.io~local-volume/local-pv":      dir,
		"uid-1/volumes/kubernetes.io~nfs/shared-pv":              dir,
		"uid-1/volumes/kubernetes.io~glusterfs/shared-pv":        dir,
		"uid-1/volumes/kubernetes.io~csi/inline-vol/mount":       dir,
		"uid-1/volumes/kubernetes.io~empty-dir/not-a-dir":        &fstest.MapFile{Data: []byte("x")},
		"uid-2/volumes/kubernetes.io~configmap/settings/app.cfg": &fstest.MapFile{Data: []byte("x")},
	}
	cases := []struct {
		name string
		v    Volume
		want string
		err  string
	}{
		{"CSI PV", Volume{PodUID: "uid-1", Source: pvc("data"), PV: pv("pvc-aaa", true)}, "uid-1/volumes/kubernetes.io~csi/pvc-aaa/mount", ""},
		{"other PV plugin", Volume{PodUID: "uid-1", Source: pvc("data"), PV: pv("local-pv", false)}, "uid-1/volumes/kubernetes.io~local-volume/local-pv", ""},
		{"emptyDir", Volume{PodUID: "uid-1", Source: corev1.Volume{Name: "cache", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}, "uid-1/volumes/kubernetes.io~empty-dir/cache", ""},
		{"inline CSI", Volume{PodUID: "uid-1", Source: corev1.Volume{Name: "inline-vol", VolumeSource: corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{Driver: "d"}}}}, "uid-1/volumes/kubernetes.io~csi/inline-vol/mount", ""},
		{"PV under two plugins", Volume{PodUID: "uid-1", Source: pvc("data"), PV: pv("shared-pv", false)}, "", "several plugins"},
		{"CSI PV not mounted", Volume{PodUID: "uid-1", Source: pvc("data"), PV: pv("pvc-zzz", true)}, "", "pvc-zzz/mount"},
		{"other PV not mounted", Volume{PodUID: "uid-1", Source: pvc("data"), PV: pv("gone", false)}, "", "plugins there: kubernetes.io~csi, kubernetes.io~empty-dir"},
		{"unbound claim", Volume{PodUID: "uid-1", Source: pvc("data")}, "", "not bound"},
		{"emptyDir that is a file", Volume{PodUID: "uid-1", Source: corev1.Volume{Name: "not-a-dir", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}, "", "not a directory"},
		{"pod not on this node", Volume{PodUID: "uid-9", Source: pvc("data"), PV: pv("pvc-aaa", true)}, "", "uid-9/volumes"},
		{"configMap", Volume{PodUID: "uid-2", Source: corev1.Volume{Name: "settings", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{}}}}, "", "no pod data"},
		{"UID climbing out", Volume{PodUID: "..", Source: pvc("data"), PV: pv("pvc-aaa", true)}, "", "not usable"},
		{"PV name climbing out", Volume{PodUID: "uid-1", Source: pvc("data"), PV: pv("../../etc", true)}, "", "not usable"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Resolve(fsys, tc.v)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Resolve = %q, %v; want an error containing %q", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Resolve = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	if _, err := Resolve(fsys, Volume{PodUID: "uid-2", Source: corev1.Volume{Name: "s", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{}}}}); !errors.Is(err, ErrNotBackedUp) {
		t.Errorf("secret volume: %v, want ErrNotBackedUp", err)
	}
}

func TestUnderRefusesSymlinks(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "uid/volumes/kubernetes.io~empty-dir/real"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "uid/volumes/kubernetes.io~empty-dir/evil")); err != nil {
		t.Fatal(err)
	}
	if p, err := Under(root, "uid/volumes/kubernetes.io~empty-dir/real"); err != nil || p != filepath.Join(root, "uid/volumes/kubernetes.io~empty-dir/real") {
		t.Errorf("real dir: %q, %v", p, err)
	}
	if _, err := Under(root, "uid/volumes/kubernetes.io~empty-dir/evil"); !errors.Is(err, ErrEscapes) {
		t.Errorf("symlinked dir: %v, want ErrEscapes", err)
	}
	if _, err := Under(root, "../outside"); !errors.Is(err, ErrEscapes) {
		t.Errorf("..: %v, want ErrEscapes", err)
	}
}
