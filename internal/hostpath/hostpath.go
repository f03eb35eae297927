// Package hostpath provides the mapping from a pod volume to its directory in the kubelet's pods
// directory (mounted in the node-agent at /host_pods), as a pure function over a file system.
package hostpath

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Kubelet volume plugin directories.
const (
	pluginCSI      = "kubernetes.io~csi"
	pluginEmptyDir = "kubernetes.io~empty-dir"
)

// ErrNotBackedUp is returned for volume types whose data is not the pod's to back up
// (configMap, secret, projected, downwardAPI, hostPath, …).
var ErrNotBackedUp = errors.New("volume type holds no pod data to back up")

// Volume is what the mapping needs to know about one pod volume.
type Volume struct {
	// PodUID is the UID of the pod.
	PodUID string
	// Source is the volume as written in the pod spec.
	Source corev1.Volume
	// PV is the PersistentVolume bound to the volume's claim (PVC volumes only).
	PV *corev1.PersistentVolume
}

// Resolve returns the volume's directory relative to the pods directory, e.g.
// "<uid>/volumes/kubernetes.io~csi/<pv>/mount". fsys is the pods directory. The directory must
// exist and be exactly one; the error says what was found otherwise.
func Resolve(fsys fs.FS, v Volume) (string, error) {
	if v.PodUID == "" || strings.ContainsAny(v.PodUID, `/\`) || v.PodUID == "." || v.PodUID == ".." {
		return "", fmt.Errorf("pod UID %q is not usable", v.PodUID)
	}
	volumes := path.Join(v.PodUID, "volumes")
	src := v.Source.VolumeSource
	switch {
	case src.PersistentVolumeClaim != nil:
		if v.PV == nil {
			return "", fmt.Errorf("volume %s: claim %s is not bound to a PersistentVolume", v.Source.Name, src.PersistentVolumeClaim.ClaimName)
		}
		if !fs.ValidPath(v.PV.Name) || strings.Contains(v.PV.Name, "/") {
			return "", fmt.Errorf("volume %s: PersistentVolume name %q is not usable", v.Source.Name, v.PV.Name)
		}
		if v.PV.Spec.CSI != nil {
			return existingDir(fsys, path.Join(volumes, pluginCSI, v.PV.Name, "mount"))
		}
		return onlyMatch(fsys, volumes, v.PV.Name)
	case src.EmptyDir != nil:
		return existingDir(fsys, path.Join(volumes, pluginEmptyDir, v.Source.Name))
	case src.CSI != nil: // inline ephemeral CSI volume
		return existingDir(fsys, path.Join(volumes, pluginCSI, v.Source.Name, "mount"))
	case src.Ephemeral != nil: // generic ephemeral volume: a PVC named <pod>-<volume>
		if v.PV == nil {
			return "", fmt.Errorf("volume %s: its ephemeral claim is not bound to a PersistentVolume", v.Source.Name)
		}
		return Resolve(fsys, Volume{PodUID: v.PodUID, PV: v.PV, Source: corev1.Volume{Name: v.Source.Name,
			VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{}}}})
	default:
		return "", fmt.Errorf("volume %s: %w", v.Source.Name, ErrNotBackedUp)
	}
}

// existingDir returns p when it is a directory.
func existingDir(fsys fs.FS, p string) (string, error) {
	st, err := fs.Stat(fsys, p)
	if err != nil {
		return "", fmt.Errorf("volume directory %s: %w", p, err)
	}
	if !st.IsDir() {
		return "", fmt.Errorf("volume directory %s is not a directory", p)
	}
	return p, nil
}

// onlyMatch finds <volumes>/<plugin>/<name> for a PV of a plugin that is not CSI (e.g.
// kubernetes.io~local-volume, kubernetes.io~nfs): exactly one plugin directory may hold it.
func onlyMatch(fsys fs.FS, volumes, name string) (string, error) {
	matches, err := fs.Glob(fsys, path.Join(volumes, "*", name))
	if err != nil {
		return "", err
	}
	var dirs []string
	for _, m := range matches {
		if st, err := fs.Stat(fsys, m); err == nil && st.IsDir() {
			dirs = append(dirs, m)
		}
	}
	switch len(dirs) {
	case 1:
		return dirs[0], nil
	case 0:
		plugins, _ := fs.Glob(fsys, path.Join(volumes, "*"))
		return "", fmt.Errorf("no directory for PersistentVolume %s under %s (plugins there: %s)", name, volumes, names(plugins))
	default:
		return "", fmt.Errorf("PersistentVolume %s is mounted by several plugins: %s", name, strings.Join(dirs, ", "))
	}
}

func names(paths []string) string {
	if len(paths) == 0 {
		return "none"
	}
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = path.Base(p)
	}
	return strings.Join(out, ", ")
}
