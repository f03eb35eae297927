package credentialfiles

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// The node-agent pod `velero install` makes: the Secret volume mounted into the agent's
// container and the variable naming the file are found, read-only, and nothing else (host paths,
// scratch space, other variables, another container's Secret); added to another pod they keep
// its own volumes.
func TestVelerosCredentialFilesCarryOver(t *testing.T) {
	secret := corev1.Volume{Name: "cloud-credentials", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "cloud-credentials"}}}
	other := corev1.Volume{Name: "sidecar-token", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "token"}}}
	velero := corev1.PodSpec{
		Containers: []corev1.Container{
			{Name: "sidecar", VolumeMounts: []corev1.VolumeMount{{Name: "sidecar-token", MountPath: "/token"}}},
			{Name: "node-agent", Env: []corev1.EnvVar{{Name: "VELERO_NAMESPACE", Value: "velero"},
				{Name: "AWS_SHARED_CREDENTIALS_FILE", Value: "/credentials/cloud"}, {Name: "GOOGLE_APPLICATION_CREDENTIALS", Value: "/credentials/cloud"}},
				VolumeMounts: []corev1.VolumeMount{{Name: "host-pods", MountPath: "/host_pods"}, {Name: "cloud-credentials", MountPath: "/credentials"}}}},
		Volumes: []corev1.Volume{{Name: "host-pods", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/var/lib/kubelet/pods"}}},
			{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}, secret, other},
	}
	f := Of(&velero, "node-agent")
	want := Files{Volumes: []corev1.Volume{secret}, Mounts: []corev1.VolumeMount{{Name: "cloud-credentials", MountPath: "/credentials", ReadOnly: true}},
		Env: []corev1.EnvVar{{Name: "AWS_SHARED_CREDENTIALS_FILE", Value: "/credentials/cloud"}, {Name: "GOOGLE_APPLICATION_CREDENTIALS", Value: "/credentials/cloud"}}}
	if !reflect.DeepEqual(f, want) {
		t.Fatalf("found %+v\nwant %+v", f, want)
	}

	mover := corev1.PodSpec{Containers: []corev1.Container{{Name: "mover", VolumeMounts: []corev1.VolumeMount{{Name: "work", MountPath: "/work"}}}},
		Volumes: []corev1.Volume{{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}}
	f.AddTo(&mover)
	f.AddTo(&mover) // the second time, the volume's name is taken: nothing is mounted or set twice
	if len(mover.Volumes) != 2 || mover.Volumes[1].Name != "cloud-credentials" || len(mover.Containers[0].VolumeMounts) != 2 ||
		!mover.Containers[0].VolumeMounts[1].ReadOnly || !reflect.DeepEqual(mover.Containers[0].Env, want.Env) {
		t.Errorf("the mover pod after AddTo: volumes %+v, mounts %+v, env %+v", mover.Volumes, mover.Containers[0].VolumeMounts, mover.Containers[0].Env)
	}
	if (Files{}).AddTo(&mover); len(mover.Volumes) != 2 {
		t.Errorf("no files added something: %+v", mover.Volumes)
	}
}
