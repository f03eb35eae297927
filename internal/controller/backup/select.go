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
}

// selectVolumes returns the pod volumes the backup covers, and why others were skipped.
func (r *Reconciler) selectVolumes(ctx context.Context, b *velerov1.Backup) ([]volume, []string, error) {
	namespaces, err := r.namespaces(ctx, b)
	if err != nil {
		return nil, nil, err
	}
	selectors, err := podSelectors(b)
	if err != nil {
		return nil, nil, err
	}
	var chosen []volume
	var skipped []string
	for _, ns := range namespaces {
		pods := &corev1.PodList{}
		if err := r.Cluster.List(ctx, pods, client.InNamespace(ns)); err != nil {
			return nil, nil, fmt.Errorf("list pods in %s: %w", ns, err)
		}
		for i := range pods.Items {
			pod := &pods.Items[i]
			if !matchesAny(selectors, pod.Labels) {
				continue
			}
			c, s := volumesOf(pod, b.Spec.DefaultVolumesToFsBackup != nil && *b.Spec.DefaultVolumesToFsBackup)
			chosen, skipped = append(chosen, c...), append(skipped, s...)
		}
	}
	return chosen, skipped, nil
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

// volumesOf picks a pod's volumes: all of them with defaultVolumesToFsBackup, else those the
// backup.velero.io/backup-volumes annotation names; never those the excludes annotation names,
// nor volumes without pod data (configMap, secret, projected, downwardAPI, hostPath).
func volumesOf(pod *corev1.Pod, all bool) (chosen []volume, skipped []string) {
	named := splitList(pod.Annotations[velerov1.AnnotationBackupVolumes])
	excluded := splitList(pod.Annotations[velerov1.AnnotationBackupVolumesExcludes])
	for _, v := range pod.Spec.Volumes {
		if !(all || slices.Contains(named, v.Name)) || slices.Contains(excluded, v.Name) {
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
		if pod.Status.Phase != corev1.PodRunning || pod.DeletionTimestamp != nil || pod.Spec.NodeName == "" {
			skipped = append(skipped, fmt.Sprintf("%s: pod is not running (phase %q)", where, pod.Status.Phase))
			continue
		}
		chosen = append(chosen, volume{Pod: pod, Volume: v.Name, Claim: claim})
	}
	return chosen, skipped
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
