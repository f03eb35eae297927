// Package credentialfiles finds the storage credentials a pod reads from files, as Velero's pods
// do: a Secret volume mounted into the container (`velero install` mounts cloud-credentials at
// /credentials) and the variables that name the files (AWS_SHARED_CREDENTIALS_FILE and the other
// providers'). Ferry's node-agent, put in place of Velero's, keeps them; its data mover pods get
// the agent's, as Velero's mover pods do.
package credentialfiles

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Files are the Secret volumes, their mounts (read-only) and the variables naming credential
// files of one container.
type Files struct {
	Volumes []corev1.Volume
	Mounts  []corev1.VolumeMount
	Env     []corev1.EnvVar
}

// Of returns the credential files of the container named container in pod (the first one when
// none has that name).
func Of(pod *corev1.PodSpec, container string) Files {
	var f Files
	if len(pod.Containers) == 0 {
		return f
	}
	c := pod.Containers[0]
	for _, each := range pod.Containers {
		if each.Name == container {
			c = each
		}
	}
	secrets := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		if v.Secret != nil {
			secrets[v.Name] = v
		}
	}
	added := map[string]bool{}
	for _, m := range c.VolumeMounts {
		v, ok := secrets[m.Name]
		if !ok {
			continue
		}
		m.ReadOnly = true
		f.Mounts = append(f.Mounts, m)
		if !added[v.Name] {
			added[v.Name] = true
			f.Volumes = append(f.Volumes, v)
		}
	}
	for _, e := range c.Env {
		if names(e.Name) {
			f.Env = append(f.Env, e)
		}
	}
	return f
}

// names reports whether the variable names a credentials file.
func names(variable string) bool {
	return strings.HasSuffix(variable, "_CREDENTIALS_FILE") || variable == "GOOGLE_APPLICATION_CREDENTIALS"
}

// AddTo adds the files to pod's first container, leaving out volumes whose names the pod uses
// already (and their mounts) and variables the container sets already.
func (f Files) AddTo(pod *corev1.PodSpec) {
	taken := map[string]bool{}
	for _, v := range pod.Volumes {
		taken[v.Name] = true
	}
	skip := map[string]bool{}
	for _, v := range f.Volumes {
		if taken[v.Name] {
			skip[v.Name] = true
			continue
		}
		pod.Volumes = append(pod.Volumes, v)
	}
	c := &pod.Containers[0]
	for _, m := range f.Mounts {
		if !skip[m.Name] {
			c.VolumeMounts = append(c.VolumeMounts, m)
		}
	}
	set := map[string]bool{}
	for _, e := range c.Env {
		set[e.Name] = true
	}
	for _, e := range f.Env {
		if !set[e.Name] {
			c.Env = append(c.Env, e)
		}
	}
}
