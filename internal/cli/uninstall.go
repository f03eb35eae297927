package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
)

const (
	// passwordSecret holds the repository password (internal/repoaccess, which the CLI does not
	// link): without it no backup can be read.
	passwordSecret = "velero-repo-credentials"
	// legacyBackupFinalizer was put on Backups by older ferry-servers to delete their snapshots.
	// With the server gone nobody removes it, and a Backup holding it keeps its namespace and the
	// backups CRD from ever being deleted.
	legacyBackupFinalizer = "ferry.io/delete-snapshots"
)

// serverFinalizers are the finalizers only ferry-server removes from Backups; with the server gone
// they would keep their namespace and the backups CRD from ever being deleted.
var serverFinalizers = []string{legacyBackupFinalizer, velerov1.FinalizerUnfinished}

// uninstallOptions configure `ferry uninstall`.
type uninstallOptions struct {
	*Options
	// Wait bounds how long to follow the deletion to its end; 0 does not wait.
	Wait time.Duration
	// KeepCRDs leaves the velero.io CRDs, and with them every Backup, Restore and location.
	KeepCRDs bool
	// DeleteNamespace deletes the install namespace too, with the password Secret in it.
	DeleteNamespace bool
	// DryRun asks the API server what would be deleted and deletes nothing.
	DryRun bool
}

func newUninstallCommand(o *Options) *cobra.Command {
	uo := &uninstallOptions{Options: o, Wait: 2 * time.Minute}
	cmd := &cobra.Command{
		Use:   "uninstall",
		Short: "Remove what `ferry install` created; the namespace and its Secrets are kept",
		Long: "Deletes, in this order, the ferry-server Deployment and the node-agent DaemonSet (and an older Ferry's\n" +
			"ferry-node-agent; it waits for\n" +
			"their pods), the finalizers ferry-server puts on Backups (" + legacyBackupFinalizer + " of older versions,\n" +
			velerov1.FinalizerUnfinished + " on those that have not ended), the velero.io\n" +
			"CRDs Ferry installs (deleting a CRD deletes all its objects: Backups, Restores, locations; --keep-crds\n" +
			"leaves them, e.g. for Velero), then the ServiceAccounts, Roles and ClusterRoles. The namespace is kept:\n" +
			"it holds the repository password Secret " + passwordSecret + ", without which no backup can be\n" +
			"read, and the cloud credentials. Data in object storage is never touched. Safe to run again.\n\n" +
			"Where `ferry install --in-place-of-velero` put Ferry's node-agent into Velero's DaemonSet, uninstall\n" +
			"puts Velero's pod template back and removes the node-agent's and data mover's ServiceAccounts and\n" +
			"rules, and nothing else: Velero's CRDs, objects and namespace stay.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := uo.client()
			if err != nil {
				return err
			}
			return uo.run(cmd.Context(), c)
		},
	}
	cmd.Flags().DurationVar(&uo.Wait, "wait", uo.Wait,
		"how long to wait until the pods, the CRDs and the namespace (--delete-namespace) are gone; 0: do not wait")
	cmd.Flags().BoolVar(&uo.KeepCRDs, "keep-crds", false, "keep the velero.io CRDs and every Backup, Restore and location")
	cmd.Flags().BoolVar(&uo.DeleteNamespace, "delete-namespace", false,
		"delete the namespace too, with the repository password Secret "+passwordSecret+" in it: back it up first")
	cmd.Flags().BoolVar(&uo.DryRun, "dry-run", false, "list what would be deleted (a server dry run) and delete nothing")
	return cmd
}

// uninstall is one run of `ferry uninstall`.
type uninstall struct {
	*uninstallOptions
	c client.Client
	// changed counts the objects deleted or stripped of a finalizer.
	changed int
	// waitCtx ends when --wait is over; every wait of the run shares it.
	waitCtx context.Context
}

func (o *uninstallOptions) run(ctx context.Context, c client.Client) error {
	agent := &appsv1.DaemonSet{}
	err := c.Get(ctx, client.ObjectKey{Namespace: o.Namespace, Name: nodeAgentDaemonSetName}, agent)
	if err != nil && !apierrors.IsNotFound(err) && !meta.IsNoMatchError(err) {
		return err
	}
	if _, inPlace := agent.Annotations[replacedTemplateAnnotation]; err == nil && inPlace {
		u := &uninstall{uninstallOptions: o, c: c}
		return u.giveBack(ctx, agent)
	}
	objs, err := workloads{Namespace: o.Namespace}.manifests()
	if err != nil {
		return err
	}
	pods := []client.Object{legacyNodeAgent(o.Namespace)} // left by an older Ferry
	var access []client.Object
	for _, obj := range objs {
		switch obj.(type) {
		case *appsv1.Deployment, *appsv1.DaemonSet:
			pods = append(pods, obj)
		default:
			access = append(access, obj)
		}
	}
	waitCtx, cancel := context.WithTimeout(ctx, o.Wait)
	defer cancel()
	u := &uninstall{uninstallOptions: o, c: c, waitCtx: waitCtx}
	if err := u.delete(ctx, pods...); err != nil {
		return err
	}
	if err := u.wait(ctx, u.podsLeft); err != nil {
		return err
	}
	if err := u.deleteJobs(ctx); err != nil {
		return err
	}
	if err := u.stripServerFinalizers(ctx); err != nil {
		return err
	}
	if err := u.deleteCRDs(ctx); err != nil {
		return err
	}
	if err := u.delete(ctx, access...); err != nil {
		return err
	}
	if err := u.namespace(ctx); err != nil {
		return err
	}
	if u.changed == 0 {
		fmt.Fprintf(u.Out, "nothing left to uninstall in namespace %s\n", u.Namespace)
	}
	return nil
}

// delete deletes each object that exists and says so, kubectl-like.
func (u *uninstall) delete(ctx context.Context, objs ...client.Object) error {
	opts := []client.DeleteOption{client.PropagationPolicy(metav1.DeletePropagationBackground)}
	if u.DryRun {
		opts = append(opts, client.DryRunAll)
	}
	for _, obj := range objs {
		err := u.c.Delete(ctx, obj, opts...)
		if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("delete %s: %w", u.name(obj), err)
		}
		u.changed++
		fmt.Fprintf(u.Out, "%s deleted%s\n", u.name(obj), u.dryRunNote())
	}
	return nil
}

func (u *uninstall) deleteCRDs(ctx context.Context) error {
	if u.KeepCRDs {
		return nil
	}
	crds, err := crdObjects()
	if err != nil {
		return err
	}
	if err := u.delete(ctx, crds...); err != nil {
		return err
	}
	return u.wait(ctx, func(ctx context.Context, detail bool) ([]string, error) { return u.crdsLeft(ctx, crds, detail) })
}

// deleteJobs deletes the Jobs ferry-server ran in the namespace (repository maintenance, backup
// verification), with their pods: a maintenance run cut short leaves the repository as it was.
func (u *uninstall) deleteJobs(ctx context.Context) error {
	jobs := &batchv1.JobList{}
	if err := u.c.List(ctx, jobs, client.InNamespace(u.Namespace), client.MatchingLabels{"app.kubernetes.io/part-of": "ferry"}); err != nil {
		return fmt.Errorf("list Ferry's Jobs in %s: %w", u.Namespace, err)
	}
	objs := make([]client.Object, len(jobs.Items))
	for i := range jobs.Items {
		objs[i] = &jobs.Items[i]
	}
	return u.delete(ctx, objs...)
}

// stripServerFinalizers removes serverFinalizers from every Backup in every namespace, so that
// nothing waits for a server that is gone. The backups' data stays in the repositories.
func (u *uninstall) stripServerFinalizers(ctx context.Context) error {
	err := u.c.Get(ctx, client.ObjectKey{Name: "backups." + velerov1.GroupVersion.Group}, &apiextensionsv1.CustomResourceDefinition{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	backups := &metav1.PartialObjectMetadataList{}
	backups.SetGroupVersionKind(velerov1.GroupVersion.WithKind("BackupList"))
	if err := u.c.List(ctx, backups); err != nil {
		return fmt.Errorf("list backups: %w", err)
	}
	for _, b := range backups.Items {
		for _, f := range serverFinalizers {
			if !controllerutil.ContainsFinalizer(&b, f) {
				continue
			}
			if err := u.removeFinalizer(ctx, client.ObjectKeyFromObject(&b), f); err != nil {
				return fmt.Errorf("remove finalizer %s from backup %s: %w", f, client.ObjectKeyFromObject(&b), err)
			}
		}
	}
	return nil
}

func (u *uninstall) removeFinalizer(ctx context.Context, key client.ObjectKey, finalizer string) error {
	var opts []client.PatchOption
	if u.DryRun {
		opts = append(opts, client.DryRunAll)
	}
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		b := &metav1.PartialObjectMetadata{}
		b.SetGroupVersionKind(velerov1.GroupVersion.WithKind("Backup"))
		if err := u.c.Get(ctx, key, b); err != nil {
			return client.IgnoreNotFound(err)
		}
		patch := client.MergeFromWithOptions(b.DeepCopy(), client.MergeFromWithOptimisticLock{})
		if !controllerutil.RemoveFinalizer(b, finalizer) {
			return nil
		}
		if err := u.c.Patch(ctx, b, patch, opts...); err != nil {
			return client.IgnoreNotFound(err)
		}
		u.changed++
		fmt.Fprintf(u.Out, "%s in namespace %s: finalizer %s removed, its data stays in the repository%s\n",
			u.name(b), key.Namespace, finalizer, u.dryRunNote())
		return nil
	})
}

// namespace deletes the namespace under --delete-namespace, and otherwise says why it is kept.
func (u *uninstall) namespace(ctx context.Context) error {
	ns := &corev1.Namespace{}
	if err := u.c.Get(ctx, client.ObjectKey{Name: u.Namespace}, ns); err != nil {
		return client.IgnoreNotFound(err)
	}
	if !u.DeleteNamespace {
		fmt.Fprintf(u.Out, "namespace %s kept: it holds the repository password Secret %s (without it no backup can be read) "+
			"and the cloud credentials; --delete-namespace deletes it\n", u.Namespace, passwordSecret)
		return nil
	}
	fmt.Fprintf(u.Out, "warning: deleting namespace %s deletes the repository password Secret %s: without it no backup can be read. "+
		"Back it up first: kubectl get secret -n %s %s -o yaml > %s.yaml\n", u.Namespace, passwordSecret, u.Namespace, passwordSecret, passwordSecret)
	if err := u.delete(ctx, ns); err != nil {
		return err
	}
	return u.wait(ctx, u.namespaceLeft)
}

// leftovers names what is still there; with detail, also what holds it (which costs more calls).
type leftovers func(ctx context.Context, detail bool) ([]string, error)

// wait polls left until it reports nothing, within --wait; on timeout the error names what is
// still there and what holds it. The calls use ctx: only the polling ends with --wait.
func (u *uninstall) wait(ctx context.Context, left leftovers) error {
	if u.Wait == 0 || u.DryRun {
		return nil
	}
	err := wait.PollUntilContextCancel(u.waitCtx, 500*time.Millisecond, true, func(context.Context) (bool, error) {
		now, err := left(ctx, false)
		return len(now) == 0, err
	})
	if err == nil || !errors.Is(u.waitCtx.Err(), context.DeadlineExceeded) {
		return err
	}
	now, err := left(ctx, true)
	if err != nil {
		return fmt.Errorf("not gone after --wait %s: %w", u.Wait, err)
	}
	return fmt.Errorf("still there after --wait %s: %s", u.Wait, strings.Join(now, "; "))
}

func (u *uninstall) dryRunNote() string {
	if u.DryRun {
		return " (server dry run)"
	}
	return ""
}
