package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferry-backup/ferry/api/shared"
	velerov1 "github.com/ferry-backup/ferry/api/v1"
	velerov2alpha1 "github.com/ferry-backup/ferry/api/v2alpha1"
	"github.com/ferry-backup/ferry/config/crd"
	"github.com/ferry-backup/ferry/internal/repository/repotest"
	"github.com/ferry-backup/ferry/internal/testenv"
	"github.com/ferry-backup/ferry/internal/uploader"
)

// TestFerrysNodeAgentInPlaceOfVelerosOnTheRealCluster is the swap docs/node-agent.md describes,
// on the real cluster, as a Velero user runs it. The cluster has Velero's CRDs (no status
// subresource, no selectable fields) and a namespace as `velero install --use-node-agent` leaves
// it: the server's Deployment, the node-agent DaemonSet (here both run a placeholder program),
// the credentials in Secret cloud-credentials mounted as AWS_SHARED_CREDENTIALS_FILE, Velero's
// default repository password, a location without spec.credential and a namespace repository
// with a snapshot Velero's agent made. Then:
//   - `ferry install --in-place-of-velero` puts Ferry's node-agent into that DaemonSet;
//   - a PodVolumeRestore and a PodVolumeBackup made as Velero's server makes them complete:
//     Velero's snapshot restored byte for byte, and backed up again from it as parent; a
//     DataUpload left to Velero's own data mover (spec.datamover empty) is moved by Ferry's, its
//     mover pod reading the store through Velero's credentials file;
//   - `ferry uninstall` puts Velero's node-agent back; Velero's Deployment and CRDs were never
//     touched.
//
// It changes the cluster's CRDs while it runs and puts Ferry's back at the end; it is the last
// story of the tier (file order).
func TestFerrysNodeAgentInPlaceOfVelerosOnTheRealCluster(t *testing.T) {
	c, ns := story(t, "swap")
	ctx := t.Context()
	velero := ns + "-velero"

	// Velero's CRDs, until the story ends.
	crds, err := crd.All()
	must(t, err)
	testenv.VeleroShaped(crds)
	for _, want := range crds {
		must(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
			have := &apiextensionsv1.CustomResourceDefinition{}
			if err := c.Client.Get(ctx, client.ObjectKeyFromObject(want), have); err != nil {
				return err
			}
			have.Spec = want.Spec
			return c.Client.Update(ctx, have)
		}))
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Minute)
		defer cancel()
		if _, err := c.Ferry(ctx, "install", "--image", c.Image, "--image-pull-policy", "Never"); err != nil {
			t.Errorf("putting Ferry's CRDs back: %v", err)
		}
	})

	// Velero's installation.
	server, agent := veleroObjects(c, velero)
	creds := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: velero, Name: "cloud-credentials"},
		StringData: map[string]string{"cloud": fmt.Sprintf("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n",
			c.Env["CLUSTER_S3_ACCESS_KEY"], c.Env["CLUSTER_S3_SECRET_KEY"])}}
	password := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: velero, Name: "velero-repo-credentials"},
		StringData: map[string]string{"repository-password": "static-passw0rd"}}
	bsl := &velerov1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Namespace: velero, Name: "default"},
		Spec: velerov1.BackupStorageLocationSpec{Provider: "aws", Default: true,
			Config:      map[string]string{"region": c.Env["CLUSTER_S3_REGION"], "s3Url": c.Env["CLUSTER_S3_URL"], "s3ForcePathStyle": "true"},
			StorageType: velerov1.StorageType{ObjectStorage: &velerov1.ObjectStorageLocation{Bucket: Bucket, Prefix: velero}}}}
	br := &velerov1.BackupRepository{ObjectMeta: metav1.ObjectMeta{Namespace: velero, Name: ns + "-default-kopia",
		Labels: map[string]string{"velero.io/volume-namespace": ns, velerov1.LabelStorageLocation: "default", "velero.io/repository-type": "kopia"}},
		Spec: velerov1.BackupRepositorySpec{VolumeNamespace: ns, BackupStorageLocation: "default", RepositoryType: velerov1.RepositoryTypeKopia}}
	nsObj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: velero}}
	must(t, c.Client.Create(ctx, nsObj))
	t.Cleanup(func() { _ = c.Client.Delete(context.WithoutCancel(ctx), nsObj) })
	for _, obj := range []client.Object{creds, password, bsl, br, server, agent} {
		must(t, c.Client.Create(ctx, obj))
	}

	app := c.NewApp(ns)
	app.Volumes = []AppVolume{{App: "web", Dir: "/content"}}
	t.Cleanup(app.Discard)
	must(t, app.Deploy(ctx))
	web, err := app.Pod(ctx, "web")
	must(t, err)
	src, want := localTree(t, 30, 3, "velero %d\n", 5000)
	kopia, err := c.KopiaAt(ctx, repotest.Tool(t, "kopia"), t.TempDir(), "static-passw0rd", "create", velero+"/kopia/"+ns+"/",
		"--override-hostname", "default", "--override-username", "default")
	must(t, err)
	source := uploader.VeleroSource(uploader.VeleroPodVolumeRequester, ns+"/"+web+"/web-content")
	snapshot, err := kopia.SnapshotDir(ctx, src, "default@default:"+source)
	must(t, err)

	// The swap.
	out, err := c.Ferry(ctx, "install", "--in-place-of-velero", "-n", velero, "--image", c.Image, "--image-pull-policy", "Never")
	must(t, err)
	t.Logf("ferry install --in-place-of-velero:\n%s", indent(out))
	pods, err := c.Kubectl(ctx, "", "get", "pods", "-n", velero, "-l", "name=node-agent,role=node-agent",
		"-o", "jsonpath={range .items[*]}{.metadata.name} {.spec.containers[0].image} {.status.phase}{'\\n'}{end}")
	must(t, err)
	if !strings.Contains(pods, c.Image+" Running") {
		t.Fatalf("no node-agent pod runs Ferry's image %s in %s:\n%s", c.Image, velero, pods)
	}

	// Velero's server asks for a restore of Velero's snapshot, then a backup.
	pvr := &velerov1.PodVolumeRestore{ObjectMeta: metav1.ObjectMeta{Namespace: velero, GenerateName: "nightly-",
		Labels: map[string]string{velerov1.LabelRestoreName: "nightly", "velero.io/restore-uid": "3f7c9e1a-uid"}},
		Spec: velerov1.PodVolumeRestoreSpec{Pod: corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: web},
			Volume: "content", BackupStorageLocation: "default", UploaderType: velerov1.UploaderTypeKopia, SnapshotID: snapshot, SourceNamespace: ns}}
	must(t, c.Client.Create(ctx, pvr))
	must(t, c.WaitVolume(ctx, pvr, 3*time.Minute))
	if pvr.Status.Phase != velerov1.PodVolumePhaseCompleted {
		t.Fatalf("restore of Velero's snapshot under Velero's CRDs: %s %q", pvr.Status.Phase, pvr.Status.Message)
	}
	const list = "cd /content && find . -path ./.velero -prune -o -type f -print | sort | xargs sha256sum"
	got, err := c.Exec(ctx, ns, web, list)
	must(t, err)
	if strings.TrimSpace(got) != want {
		t.Fatalf("the volume after restoring Velero's snapshot:\n%s\nwant:\n%s", got, want)
	}
	pvb := &velerov1.PodVolumeBackup{ObjectMeta: metav1.ObjectMeta{Namespace: velero, GenerateName: "nightly-2-",
		Labels:      map[string]string{velerov1.LabelBackupName: "nightly-2", velerov1.LabelBackupUID: "8d1f-uid"},
		Annotations: map[string]string{velerov1.AnnotationPVCName: "web-content"}},
		Spec: velerov1.PodVolumeBackupSpec{Node: c.Node, Pod: corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: web},
			Volume: "content", BackupStorageLocation: "default", UploaderType: velerov1.UploaderTypeKopia,
			Tags: map[string]string{"backup": "nightly-2", "ns": ns, "pod": web, "volume": "content"}}}
	must(t, c.Client.Create(ctx, pvb))
	must(t, c.WaitVolume(ctx, pvb, 3*time.Minute))
	if pvb.Status.Phase != velerov1.PodVolumePhaseCompleted || pvb.Status.SnapshotID == "" {
		t.Fatalf("backup under Velero's CRDs: %s %q", pvb.Status.Phase, pvb.Status.Message)
	}
	if total, up := pvb.Status.Progress.TotalBytes, pvb.Status.IncrementalBytes; total < 1<<20 || up > 64<<10 {
		t.Errorf("the backup after the swap uploaded %d of %d bytes; it should start from Velero's snapshot %s", up, total, snapshot)
	}
	listed, err := kopia.Snapshots(ctx)
	must(t, err)
	if !listed[pvb.Status.SnapshotID] {
		t.Errorf("Velero's view of its repository (the kopia CLI as default@default) lacks the new snapshot %s", pvb.Status.SnapshotID)
	}

	// A DataUpload as Velero's server leaves it to Velero's own agent (spec.datamover empty):
	// Ferry's agent, in place of Velero's, moves it, its mover pod reading the storage through
	// Velero's credentials file as the agent does.
	vs, err := c.SnapshotClaim(ctx, ns, "web-content", "web-content-velero")
	must(t, err)
	du := &velerov2alpha1.DataUpload{ObjectMeta: metav1.ObjectMeta{Namespace: velero, GenerateName: "nightly-3-",
		Labels: map[string]string{velerov1.LabelBackupName: "nightly-3"}},
		Spec: velerov2alpha1.DataUploadSpec{SnapshotType: velerov2alpha1.SnapshotTypeCSI, SourcePVC: "web-content", SourceNamespace: ns,
			CSISnapshot: &velerov2alpha1.CSISnapshotSpec{VolumeSnapshot: vs.Name, StorageClass: c.Env["CLUSTER_STORAGE_CLASS"],
				SnapshotClass: "csi-hostpath-snapclass", Driver: "hostpath.csi.k8s.io"},
			BackupStorageLocation: "default", OperationTimeout: shared.Duration{Duration: 10 * time.Minute}}}
	must(t, c.Client.Create(ctx, du))
	must(t, c.WaitVolume(ctx, du, 5*time.Minute))
	if du.Status.Phase != velerov2alpha1.DataMovePhaseCompleted || du.Status.SnapshotID == "" {
		t.Fatalf("DataUpload %s for Velero's own data mover: %s %q", du.Name, du.Status.Phase, du.Status.Message)
	}
	if listed, err = kopia.Snapshots(ctx); err != nil || !listed[du.Status.SnapshotID] {
		t.Errorf("the namespace's repository lacks the data mover's snapshot %s (%v)", du.Status.SnapshotID, err)
	}

	// And back.
	out, err = c.Ferry(ctx, "uninstall", "-n", velero)
	must(t, err)
	t.Logf("ferry uninstall:\n%s", indent(out))
	back := &appsv1.DaemonSet{}
	must(t, c.Client.Get(ctx, client.ObjectKeyFromObject(agent), back))
	if img := back.Spec.Template.Spec.Containers[0].Image; img != agent.Spec.Template.Spec.Containers[0].Image ||
		back.Spec.Template.Spec.ServiceAccountName != agent.Spec.Template.Spec.ServiceAccountName {
		t.Errorf("after uninstall the DaemonSet runs %s as %s, not Velero's node-agent", img, back.Spec.Template.Spec.ServiceAccountName)
	}
	if err := c.Client.Get(ctx, client.ObjectKey{Namespace: velero, Name: "ferry-node-agent"}, &corev1.ServiceAccount{}); !apierrors.IsNotFound(err) {
		t.Errorf("Ferry's node-agent ServiceAccount after uninstall: %v", err)
	}
	d := &appsv1.Deployment{}
	must(t, c.Client.Get(ctx, client.ObjectKeyFromObject(server), d))
	if d.Generation != 1 {
		t.Errorf("Velero's server Deployment was changed (generation %d)", d.Generation)
	}
	have := &apiextensionsv1.CustomResourceDefinition{}
	must(t, c.Client.Get(ctx, client.ObjectKey{Name: "podvolumebackups.velero.io"}, have))
	if have.Spec.Versions[0].Subresources != nil {
		t.Errorf("Velero's CRDs were changed by the swap: podvolumebackups has a status subresource again")
	}
	t.Logf("in place of Velero's node-agent: Velero's snapshot %s restored (%d bytes), backed up again uploading %d of %d bytes; "+
		"Velero's DataUpload %s moved: %s", snapshot[:8], pvr.Status.Progress.BytesDone, pvb.Status.IncrementalBytes, pvb.Status.Progress.TotalBytes,
		du.Name, du.Status.Message)
}

// veleroObjects returns Velero's server Deployment and node-agent DaemonSet in namespace ns as
// `velero install --use-node-agent` makes them, with a placeholder program in the cluster's tools
// image instead of Velero's (this tier does not build Velero).
func veleroObjects(c *Cluster, ns string) (*appsv1.Deployment, *appsv1.DaemonSet) {
	container := func(name string) corev1.Container {
		return corev1.Container{Name: name, Image: c.Env["CLUSTER_TOOLS_IMAGE"], ImagePullPolicy: corev1.PullNever,
			Command:      []string{"/bin/sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"},
			Env:          []corev1.EnvVar{{Name: "VELERO_NAMESPACE", Value: ns}, {Name: "AWS_SHARED_CREDENTIALS_FILE", Value: "/credentials/cloud"}},
			VolumeMounts: []corev1.VolumeMount{{Name: "cloud-credentials", MountPath: "/credentials"}}}
	}
	credentials := corev1.Volume{Name: "cloud-credentials", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "cloud-credentials"}}}
	grace := int64(1)
	agentPod := corev1.PodSpec{TerminationGracePeriodSeconds: &grace, Containers: []corev1.Container{container("node-agent")},
		Volumes: []corev1.Volume{credentials, {Name: "host-pods", VolumeSource: corev1.VolumeSource{
			HostPath: &corev1.HostPathVolumeSource{Path: "/var/lib/kubelet/pods"}}}}}
	agentPod.Containers[0].VolumeMounts = append(agentPod.Containers[0].VolumeMounts, corev1.VolumeMount{Name: "host-pods", MountPath: "/host_pods"})
	agentLabels := map[string]string{"name": "node-agent", "role": "node-agent", "component": "velero"}
	agent := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "node-agent", Labels: map[string]string{"component": "velero"}},
		Spec: appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"name": "node-agent"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: agentLabels}, Spec: agentPod}}}
	serverLabels := map[string]string{"deploy": "velero", "component": "velero"}
	server := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "velero", Labels: map[string]string{"component": "velero"}},
		Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: serverLabels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: serverLabels},
				Spec: corev1.PodSpec{TerminationGracePeriodSeconds: &grace, Containers: []corev1.Container{container("velero")},
					Volumes: []corev1.Volume{credentials}}}}}
	return server, agent
}
