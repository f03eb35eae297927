package backup

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
)

// volume is one pod volume chosen for backup.
type volume struct {
	Pod    *corev1.Pod
	Volume string
	Claim  string
	// Excluded: the pod's backup-volumes-excludes annotation names it.
	Excluded bool
}

// selection is what a backup covers: pod volumes for the file-system path, claims for the data
// mover, and why other volumes were skipped.
type selection struct {
	PodVolumes []volume
	Claims     []claim
	Skipped    []string
}

// selectVolumes returns the volumes the backup covers, and why others were skipped.
func (r *Reconciler) selectVolumes(ctx context.Context, b *velerov1.Backup) (selection, error) {
	var sel selection
	namespaces, err := r.namespaces(ctx, b)
	if err != nil {
		return sel, err
	}
	selectors, err := podSelectors(b)
	if err != nil {
		return sel, err
	}
	moveData := b.Spec.SnapshotMoveData != nil && *b.Spec.SnapshotMoveData
	var support *snapshotSupport
	if moveData {
		if support, err = r.snapshotSupport(ctx); err != nil {
			return sel, err
		}
	}
	for _, ns := range namespaces {
		pods := &corev1.PodList{}
		if err := r.Cluster.List(ctx, pods, client.InNamespace(ns)); err != nil {
			return sel, fmt.Errorf("list pods in %s: %w", ns, err)
		}
		var others []volume // claims of selected pods that the file-system path did not take
		for i := range pods.Items {
			pod := &pods.Items[i]
			if !matchesAny(selectors, pod.Labels) {
				continue
			}
			c, s, o := volumesOf(pod, b.Spec.DefaultVolumesToFsBackup != nil && *b.Spec.DefaultVolumesToFsBackup)
			sel.PodVolumes, sel.Skipped, others = append(sel.PodVolumes, c...), append(sel.Skipped, s...), append(others, o...)
		}
		if moveData {
			if err := r.selectClaims(ctx, &sel, support, ns, pods.Items, others, selectors); err != nil {
				return sel, err
			}
		}
	}
	return sel, nil
}

// namespaces lists includedNamespaces (all when empty or "*") minus excludedNamespaces.
func (r *Reconciler) namespaces(ctx context.Context, b *velerov1.Backup) ([]string, error) {
	included := b.Spec.IncludedNamespaces
	if len(included) == 0 || slices.Contains(included, "*") {
		list := &corev1.NamespaceList{}
		if err := r.Cluster.List(ctx, list); err != nil {
			return nil, fmt.Errorf("list namespaces: %w", err)
		}
		included = nil
		for _, ns := range list.Items {
			included = append(included, ns.Name)
		}
	}
	var out []string
	for _, ns := range included {
		if !slices.Contains(b.Spec.ExcludedNamespaces, ns) && ns != b.Namespace {
			out = append(out, ns)
		}
	}
	slices.Sort(out)
	return out, nil
}

func podSelectors(b *velerov1.Backup) ([]labels.Selector, error) {
	all := b.Spec.OrLabelSelectors
	if b.Spec.LabelSelector != nil {
		all = append(all, b.Spec.LabelSelector)
	}
	var out []labels.Selector
	for _, ls := range all {
		s, err := metav1.LabelSelectorAsSelector(ls)
		if err != nil {
			return nil, fmt.Errorf("spec.labelSelector: %w", err)
		}
		out = append(out, s)
	}
	return out, nil
}

func matchesAny(selectors []labels.Selector, l map[string]string) bool {
	if len(selectors) == 0 {
		return true
	}
	for _, s := range selectors {
		if s.Matches(labels.Set(l)) {
			return true
		}
	}
	return false
}

// volumesOf picks a pod's volumes for the file-system path: all of them with
// defaultVolumesToFsBackup, else those the backup.velero.io/backup-volumes annotation names;
// never those the excludes annotation names, nor volumes without pod data (configMap, secret,
// projected, downwardAPI, hostPath). others are the pod's claims it did not pick, which the data
// mover may take.
func volumesOf(pod *corev1.Pod, all bool) (chosen []volume, skipped []string, others []volume) {
	named := splitList(pod.Annotations[velerov1.AnnotationBackupVolumes])
	excluded := splitList(pod.Annotations[velerov1.AnnotationBackupVolumesExcludes])
	for _, v := range pod.Spec.Volumes {
		if !(all || slices.Contains(named, v.Name)) || slices.Contains(excluded, v.Name) {
			if v.PersistentVolumeClaim != nil {
				others = append(others, volume{Pod: pod, Volume: v.Name, Claim: v.PersistentVolumeClaim.ClaimName,
					Excluded: slices.Contains(excluded, v.Name)})
			}
			continue
		}
		where := pod.Namespace + "/" + pod.Name + " volume " + v.Name
		claim := ""
		switch {
		case v.PersistentVolumeClaim != nil:
			claim = v.PersistentVolumeClaim.ClaimName
		case v.EmptyDir != nil, v.CSI != nil, v.Ephemeral != nil:
		default:
			if slices.Contains(named, v.Name) {
				skipped = append(skipped, where+": its type holds no pod data")
			}
			continue
		}
		if reason := notRunning(pod); reason != "" {
			skipped = append(skipped, where+": "+reason)
			continue
		}
		chosen = append(chosen, volume{Pod: pod, Volume: v.Name, Claim: claim})
	}
	return chosen, skipped, others
}

// notRunning says why the file-system path cannot read the pod's volumes, or "".
func notRunning(pod *corev1.Pod) string {
	if pod.Status.Phase != corev1.PodRunning || pod.DeletionTimestamp != nil || pod.Spec.NodeName == "" {
		return fmt.Sprintf("pod is not running (phase %q)", pod.Status.Phase)
	}
	return ""
}

func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if p := strings.TrimSpace(part); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// skippedCondition reports skipped volumes (up to ten named) as a condition.
func skippedCondition(skipped []string, now metav1.Time) []metav1.Condition {
	if len(skipped) == 0 {
		return nil
	}
	shown := skipped[:min(len(skipped), 10)]
	msg := strings.Join(shown, "; ")
	if len(skipped) > len(shown) {
		msg += fmt.Sprintf("; and %d more", len(skipped)-len(shown))
	}
	return []metav1.Condition{{Type: "VolumesSkipped", Status: metav1.ConditionTrue, Reason: "NotBackedUp", Message: msg, LastTransitionTime: now}}
}
