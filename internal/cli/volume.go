package cli

import (
	"context"
	"fmt"
	"sort"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferry-backup/ferry/api/shared"
	velerov1 "github.com/ferry-backup/ferry/api/v1"
	velerov2alpha1 "github.com/ferry-backup/ferry/api/v2alpha1"
)

// Data paths of a volume, as the CLI names them.
const (
	pathFileSystem = "file system"
	pathDataMover  = "data mover"
)

// volume is one volume of a backup or restore, whichever path moved it: a PodVolumeBackup,
// PodVolumeRestore, DataUpload or DataDownload seen the same way.
type volume struct {
	Kind, Name string // the object behind it
	Path       string // pathFileSystem or pathDataMover
	Namespace  string // of the pod or claim
	Pod, Vol   string // file system: the pod and its volume
	PVC        string
	Node       string
	Phase      string
	SnapshotID string
	Progress   shared.DataMoveOperationProgress
	// Incremental is the bytes that were new to the repository (backups only).
	Incremental int64
	Start, End  *metav1.Time
	Message     string
}

// Target names what the volume is: namespace/pod:volume, or pvc namespace/claim.
func (v volume) Target() string {
	if v.Pod != "" {
		return fmt.Sprintf("%s/%s:%s", v.Namespace, v.Pod, v.Vol)
	}
	return fmt.Sprintf("pvc %s/%s", v.Namespace, v.PVC)
}

// Duration is the time from start to completion, or to now while it runs; 0 before it starts.
func (v volume) Duration(now time.Time) time.Duration {
	switch {
	case v.Start == nil:
		return 0
	case v.End != nil:
		return v.End.Sub(v.Start.Time)
	}
	return now.Sub(v.Start.Time)
}

func (v volume) terminal() bool {
	return v.Phase == string(velerov1.PodVolumePhaseCompleted) || v.Phase == string(velerov1.PodVolumePhaseFailed) ||
		v.Phase == string(velerov1.PodVolumePhaseCanceled)
}

// backupVolumes lists the volumes of a backup: its PodVolumeBackups and DataUploads, found by
// the velero.io/backup-name label the server puts on them.
func backupVolumes(ctx context.Context, c client.Client, ns, backup string) ([]volume, error) {
	sel := []client.ListOption{client.InNamespace(ns), client.MatchingLabels{velerov1.LabelBackupName: backup}}
	pvbs := &velerov1.PodVolumeBackupList{}
	if err := c.List(ctx, pvbs, sel...); err != nil {
		return nil, fmt.Errorf("list the PodVolumeBackups of backup %s: %w", backup, err)
	}
	dus := &velerov2alpha1.DataUploadList{}
	if err := c.List(ctx, dus, sel...); err != nil {
		return nil, fmt.Errorf("list the DataUploads of backup %s: %w", backup, err)
	}
	vols := make([]volume, 0, len(pvbs.Items)+len(dus.Items))
	for _, p := range pvbs.Items {
		s := p.Status
		vols = append(vols, volume{Kind: "PodVolumeBackup", Name: p.Name, Path: pathFileSystem,
			Namespace: p.Spec.Pod.Namespace, Pod: p.Spec.Pod.Name, Vol: p.Spec.Volume, PVC: p.Spec.Tags["pvc"],
			Node: p.Spec.Node, Phase: string(s.Phase), SnapshotID: s.SnapshotID, Progress: s.Progress,
			Incremental: max(s.IncrementalBytes, s.Progress.IncrementalBytes),
			Start:       s.StartTimestamp, End: s.CompletionTimestamp, Message: s.Message})
	}
	for _, d := range dus.Items {
		s := d.Status
		vols = append(vols, volume{Kind: "DataUpload", Name: d.Name, Path: pathDataMover,
			Namespace: d.Spec.SourceNamespace, PVC: d.Spec.SourcePVC,
			Node: firstOf(s.Node, s.AcceptedByNode, d.Spec.Node), Phase: string(s.Phase), SnapshotID: s.SnapshotID,
			Progress: s.Progress, Incremental: max(s.IncrementalBytes, s.Progress.IncrementalBytes),
			Start: s.StartTimestamp, End: s.CompletionTimestamp, Message: s.Message})
	}
	sortVolumes(vols)
	return vols, nil
}

// restoreVolumes lists the volumes of a restore: its PodVolumeRestores and DataDownloads, found
// by the velero.io/restore-name label the server puts on them.
func restoreVolumes(ctx context.Context, c client.Client, ns, restore string) ([]volume, error) {
	sel := []client.ListOption{client.InNamespace(ns), client.MatchingLabels{velerov1.LabelRestoreName: restore}}
	pvrs := &velerov1.PodVolumeRestoreList{}
	if err := c.List(ctx, pvrs, sel...); err != nil {
		return nil, fmt.Errorf("list the PodVolumeRestores of restore %s: %w", restore, err)
	}
	dds := &velerov2alpha1.DataDownloadList{}
	if err := c.List(ctx, dds, sel...); err != nil {
		return nil, fmt.Errorf("list the DataDownloads of restore %s: %w", restore, err)
	}
	vols := make([]volume, 0, len(pvrs.Items)+len(dds.Items))
	for _, p := range pvrs.Items {
		s := p.Status
		vols = append(vols, volume{Kind: "PodVolumeRestore", Name: p.Name, Path: pathFileSystem,
			Namespace: p.Spec.Pod.Namespace, Pod: p.Spec.Pod.Name, Vol: p.Spec.Volume,
			Node: firstOf(s.Node, p.Spec.Node), Phase: string(s.Phase), SnapshotID: p.Spec.SnapshotID, Progress: s.Progress,
			Start: s.StartTimestamp, End: s.CompletionTimestamp, Message: s.Message})
	}
	for _, d := range dds.Items {
		s := d.Status
		vols = append(vols, volume{Kind: "DataDownload", Name: d.Name, Path: pathDataMover,
			Namespace: d.Spec.TargetVolume.Namespace, PVC: d.Spec.TargetVolume.PVC,
			Node: firstOf(s.Node, s.AcceptedByNode, d.Spec.Node), Phase: string(s.Phase), SnapshotID: d.Spec.SnapshotID,
			Progress: s.Progress, Start: s.StartTimestamp, End: s.CompletionTimestamp, Message: s.Message})
	}
	sortVolumes(vols)
	return vols, nil
}

func sortVolumes(vols []volume) {
	sort.Slice(vols, func(i, j int) bool {
		if vols[i].Path != vols[j].Path {
			return vols[i].Path > vols[j].Path // file system first
		}
		return vols[i].Target() < vols[j].Target()
	})
}

func firstOf(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
