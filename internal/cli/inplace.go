package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferry-backup/ferry/internal/credentialfiles"
)

// In place of Velero's node-agent: a Velero installation keeps its server, CRDs, locations and
// Secrets, and Ferry's node-agent runs in Velero's `node-agent` DaemonSet (the name and the
// role=node-agent pods Velero's server looks for). `ferry install --in-place-of-velero` changes
// only that DaemonSet's pod template, keeping Velero's template in an annotation, and adds the
// ServiceAccounts and generated rules of the node-agent and the data mover pods; `ferry
// uninstall` puts Velero's template back and removes them. The DaemonSet itself is not replaced:
// its selector cannot change.

// replacedTemplateAnnotation holds, on the node-agent DaemonSet, the pod template Ferry's
// replaced (JSON): what `ferry uninstall` puts back.
const replacedTemplateAnnotation = "ferry.io/replaced-pod-template"

// veleroCRD is the CRD without which there is nothing for a node-agent to do.
const veleroCRD = "podvolumebackups.velero.io"

// runInPlace is `ferry install --in-place-of-velero`.
func (o *installOptions) runInPlace(ctx context.Context) error {
	w, err := o.workloads()
	if err != nil {
		return err
	}
	if o.DryRun {
		objs, err := w.access(true)
		if err != nil {
			return err
		}
		return o.print(append(objs, inPlaceNodeAgent(w)))
	}
	c, err := o.client()
	if err != nil {
		return err
	}
	return o.installInPlace(ctx, c, w)
}

func (o *installOptions) installInPlace(ctx context.Context, c client.Client, w workloads) error {
	if err := c.Get(ctx, client.ObjectKey{Name: veleroCRD}, &apiextensionsv1.CustomResourceDefinition{}); apierrors.IsNotFound(err) {
		return fmt.Errorf("--in-place-of-velero: no CRD %s: Velero is not installed in this cluster; `ferry install` without it installs Ferry", veleroCRD)
	} else if err != nil {
		return err
	}
	key := client.ObjectKey{Namespace: w.Namespace, Name: nodeAgentDaemonSetName}
	if err := c.Get(ctx, key, &appsv1.DaemonSet{}); apierrors.IsNotFound(err) {
		return fmt.Errorf("--in-place-of-velero: no DaemonSet %s in namespace %s to put Ferry's node-agent in "+
			"(`velero install --use-node-agent` creates it; -n names Velero's namespace)", key.Name, key.Namespace)
	} else if err != nil {
		return err
	}
	objs, err := w.access(true)
	if err != nil {
		return err
	}
	for _, obj := range objs {
		if err := apply(ctx, c, obj); err != nil {
			return fmt.Errorf("install %s: %w", describe(obj), err)
		}
	}
	ferry := inPlaceNodeAgent(w)
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		ds := &appsv1.DaemonSet{}
		if err := c.Get(ctx, key, ds); err != nil {
			return err
		}
		return takeOver(ds, ferry, func() error { return c.Update(ctx, ds) })
	})
	if err != nil {
		return fmt.Errorf("put Ferry's node-agent into DaemonSet %s: %w", key, err)
	}
	fmt.Fprintf(o.Out, "DaemonSet %s/%s runs Ferry's node-agent (image %s, ServiceAccount %s); Velero's pod template is kept in its annotation %s\n",
		key.Namespace, key.Name, w.Image, nodeAgentName, replacedTemplateAnnotation)
	if o.Wait == 0 {
		return nil
	}
	if err := rolledOut(ctx, c, key, o.Wait); err != nil {
		return err
	}
	fmt.Fprintf(o.Out, "node-agent pods ready; Velero's server, CRDs, locations and Secrets are untouched. `ferry uninstall -n %s` puts Velero's node-agent back\n", key.Namespace)
	return nil
}

// inPlaceNodeAgent is Ferry's node-agent DaemonSet as it runs in place of Velero's: it also moves
// the DataUploads and DataDownloads Velero's server leaves to Velero's own agent (spec.datamover
// velero or empty), since that agent no longer runs.
func inPlaceNodeAgent(w workloads) *appsv1.DaemonSet {
	ds := w.nodeAgent()
	c := &ds.Spec.Template.Spec.Containers[0]
	c.Args = append(c.Args, "--data-movers=ferry,velero")
	return ds
}

// notVelerosNodeAgent refuses a plain `ferry install` into a namespace whose node-agent
// DaemonSet is Velero's, or Ferry's in place of Velero's: applying Ferry's would fail on the
// DaemonSet's selector, which cannot change, after the rest was installed.
func (o *installOptions) notVelerosNodeAgent(ctx context.Context, c client.Client) error {
	if o.CRDsOnly {
		return nil
	}
	ds := &appsv1.DaemonSet{}
	err := c.Get(ctx, client.ObjectKey{Namespace: o.Namespace, Name: nodeAgentDaemonSetName}, ds)
	if apierrors.IsNotFound(err) {
		return nil
	} else if err != nil {
		return fmt.Errorf("read DaemonSet %s/%s: %w", o.Namespace, nodeAgentDaemonSetName, err)
	}
	if _, ok := ds.Annotations[replacedTemplateAnnotation]; ok {
		return fmt.Errorf("Ferry's node-agent runs in place of Velero's in namespace %s: `ferry install --in-place-of-velero -n %s` updates it",
			o.Namespace, o.Namespace)
	}
	if ds.Spec.Template.Spec.ServiceAccountName != nodeAgentName {
		return fmt.Errorf("namespace %s has another node-agent DaemonSet (ServiceAccount %q; Velero's?): `ferry install --in-place-of-velero -n %s` "+
			"runs Ferry's node-agent in it and keeps Velero's server, or install Ferry into another namespace with -n",
			o.Namespace, ds.Spec.Template.Spec.ServiceAccountName, o.Namespace)
	}
	return nil
}

// takeOver changes ds's pod template to ferry's, keeping Velero's template in the annotation
// (the first one: a second install does not overwrite it with Ferry's), then calls update.
func takeOver(ds, ferry *appsv1.DaemonSet, update func() error) error {
	velero := ds.Spec.Template
	if saved, ok := ds.Annotations[replacedTemplateAnnotation]; ok {
		velero = corev1.PodTemplateSpec{}
		if err := json.Unmarshal([]byte(saved), &velero); err != nil {
			return fmt.Errorf("annotation %s: %w", replacedTemplateAnnotation, err)
		}
	} else {
		saved, err := json.Marshal(ds.Spec.Template)
		if err != nil {
			return err
		}
		metav1.SetMetaDataAnnotation(&ds.ObjectMeta, replacedTemplateAnnotation, string(saved))
	}
	tmpl := *ferry.Spec.Template.DeepCopy()
	tmpl.Labels = maps.Clone(velero.Labels)
	if tmpl.Labels == nil {
		tmpl.Labels = map[string]string{}
	}
	maps.Copy(tmpl.Labels, ferry.Spec.Template.Labels)
	selector, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector)
	if err != nil {
		return err
	}
	if !selector.Matches(labels.Set(tmpl.Labels)) {
		return fmt.Errorf("its selector %s does not select Ferry's pods (labels %v)", selector, tmpl.Labels)
	}
	// Velero's agent reads the storage credentials from files (cloud-credentials at /credentials,
	// AWS_SHARED_CREDENTIALS_FILE), and so does Ferry's for a location without spec.credential.
	credentialfiles.Of(&velero.Spec, nodeAgentDaemonSetName).AddTo(&tmpl.Spec)
	ds.Spec.Template = tmpl
	return update()
}

// rolledOut waits until every node runs a ready pod of the DaemonSet's current template.
func rolledOut(ctx context.Context, c client.Client, key client.ObjectKey, timeout time.Duration) error {
	var state string
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		ds := &appsv1.DaemonSet{}
		if err := c.Get(ctx, key, ds); err != nil {
			return false, err
		}
		s := ds.Status
		state = fmt.Sprintf("%d of %d nodes updated, %d ready", s.UpdatedNumberScheduled, s.DesiredNumberScheduled, s.NumberReady)
		return s.ObservedGeneration >= ds.Generation && s.UpdatedNumberScheduled == s.DesiredNumberScheduled &&
			s.NumberReady == s.DesiredNumberScheduled && s.NumberUnavailable == 0, nil
	})
	if err != nil {
		return fmt.Errorf("DaemonSet %s not rolled out within %s (%s): %w; kubectl -n %s describe daemonset %s says why",
			key, timeout, state, err, key.Namespace, key.Name)
	}
	return nil
}

// giveBack is `ferry uninstall` where Ferry's node-agent runs in place of Velero's: it puts
// Velero's pod template back, waits for Velero's pods and removes what install added. Velero's
// CRDs, objects, namespace and server are not touched.
func (u *uninstall) giveBack(ctx context.Context, ds *appsv1.DaemonSet) error {
	velero := corev1.PodTemplateSpec{}
	if err := json.Unmarshal([]byte(ds.Annotations[replacedTemplateAnnotation]), &velero); err != nil {
		return fmt.Errorf("DaemonSet %s/%s: annotation %s: %w", ds.Namespace, ds.Name, replacedTemplateAnnotation, err)
	}
	var opts []client.UpdateOption
	if u.DryRun {
		opts = append(opts, client.DryRunAll)
	}
	key := client.ObjectKeyFromObject(ds)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := u.c.Get(ctx, key, ds); err != nil {
			return err
		}
		ds.Spec.Template = velero
		delete(ds.Annotations, replacedTemplateAnnotation)
		return u.c.Update(ctx, ds, opts...)
	})
	if err != nil {
		return fmt.Errorf("put Velero's node-agent back into DaemonSet %s: %w", key, err)
	}
	u.changed++
	fmt.Fprintf(u.Out, "DaemonSet %s: Velero's pod template put back%s\n", key, u.dryRunNote())
	if u.Wait > 0 && !u.DryRun {
		if err := rolledOut(ctx, u.c, key, u.Wait); err != nil {
			return err
		}
	}
	access, err := workloads{Namespace: u.Namespace}.access(true)
	if err != nil {
		return err
	}
	if err := u.delete(ctx, access...); err != nil {
		return err
	}
	fmt.Fprintf(u.Out, "Velero's server, CRDs, locations and Secrets in namespace %s were not touched\n", u.Namespace)
	return nil
}
