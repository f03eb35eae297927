package datamover

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferry-backup/ferry/api/shared"
	velerov1 "github.com/ferry-backup/ferry/api/v1"
	velerov2alpha1 "github.com/ferry-backup/ferry/api/v2alpha1"
	"github.com/ferry-backup/ferry/internal/exposer"
	"github.com/ferry-backup/ferry/internal/repoaccess"
	"github.com/ferry-backup/ferry/internal/repository"
	"github.com/ferry-backup/ferry/internal/uploader"
)

// progressInterval is how often the Progress Event is written at most.
const progressInterval = 2 * time.Second

// upload backs the mounted volume up. Its source is the claim's, the same as the file-system
// path's, so either path's previous snapshot of the claim is the parent, and a mover restarted
// after a crash resumes from its checkpoint.
func (m *mover) upload(ctx context.Context, access *repoaccess.Access, du *velerov2alpha1.DataUpload) exposer.Result {
	m.event(ctx, corev1.EventTypeNormal, exposer.ReasonStarted, fmt.Sprintf("uploading claim %s/%s (snapshot %s) on node %s",
		du.Spec.SourceNamespace, du.Spec.SourcePVC, snapshotName(du), m.opts.NodeName), nil)
	rep, release, err := access.OpenFor(ctx, du.Spec.BackupStorageLocation, du.Spec.SourceNamespace, repoaccess.ForBackup)
	if err != nil {
		return m.failed(ctx, err)
	}
	defer release()
	tags := map[string]string{"dataupload": du.Name, "ns": du.Spec.SourceNamespace, "pvc": du.Spec.SourcePVC,
		"backup-storage-location": du.Spec.BackupStorageLocation}
	if b := du.Labels[velerov1.LabelBackupName]; b != "" {
		tags["backup"] = b
	}
	opts := uploader.BackupOptions{
		Source:   fmt.Sprintf("/%s/pvc/%s", du.Spec.SourceNamespace, du.Spec.SourcePVC),
		Parallel: m.opts.Parallel,
		Tags:     tags,
		Progress: func(p uploader.Progress) { m.progress(ctx, p.Status()) },
	}
	if rep.Location().Namespace != "" { // Velero's layout: the snapshot Velero's data mover would write
		opts = opts.AsVelero(uploader.VeleroDataMoverRequester, du.Spec.SourceNamespace+"/"+du.Spec.SourcePVC)
	}
	res, err := uploader.Backup(ctx, rep, m.opts.VolumePath, opts)
	if err != nil {
		return m.failed(ctx, err)
	}
	st := res.Stats
	p := st.Progress()
	msg := fmt.Sprintf("snapshot %s: %d files, %d bytes, %d bytes uploaded in %s", res.SnapshotID, st.Files, st.Bytes,
		st.UploadedBytes, st.Duration.Round(time.Millisecond))
	if st.Errors > 0 {
		msg += fmt.Sprintf("; %d entries could not be read", st.Errors)
	}
	return exposer.Result{Phase: exposer.ReasonCompleted, Message: msg, SnapshotID: res.SnapshotID, Progress: p,
		NotBackedUp: st.Errors, NotBackedUpMessages: st.ErrorMessages}
}

// download restores the snapshot into the mounted (new, empty) volume.
func (m *mover) download(ctx context.Context, access *repoaccess.Access, dd *velerov2alpha1.DataDownload) exposer.Result {
	m.event(ctx, corev1.EventTypeNormal, exposer.ReasonStarted, fmt.Sprintf("restoring snapshot %s for claim %s/%s on node %s",
		dd.Spec.SnapshotID, dd.Spec.TargetVolume.Namespace, dd.Spec.TargetVolume.PVC, m.opts.NodeName), nil)
	rep, release, err := access.OpenFor(ctx, dd.Spec.BackupStorageLocation, dd.Spec.SourceNamespace, repoaccess.ForRestore)
	if err != nil {
		return m.failed(ctx, err)
	}
	defer release()
	st, err := uploader.Restore(ctx, rep, dd.Spec.SnapshotID, m.opts.VolumePath, uploader.RestoreOptions{
		Parallel: m.opts.Parallel,
		Progress: func(p uploader.Progress) { m.progress(ctx, p.Status()) },
	})
	if err != nil {
		return m.failed(ctx, err)
	}
	p := shared.DataMoveOperationProgress{TotalBytes: st.Bytes, BytesDone: st.Bytes, TotalFiles: st.Files, FilesDone: st.Files, Stage: shared.ProgressStageDone}
	return exposer.Result{Phase: exposer.ReasonCompleted, Progress: p, Message: fmt.Sprintf("restored %d files, %d directories, %d symlinks, %d bytes in %s",
		st.Files, st.Dirs, st.Symlinks, st.Bytes, st.Duration.Round(time.Millisecond))}
}

// failed is the result of an error: Canceled when the pod was told to stop (an upload saved a
// checkpoint first), Failed otherwise.
func (m *mover) failed(ctx context.Context, err error) exposer.Result {
	if ctx.Err() != nil || errors.Is(err, uploader.ErrCanceled) {
		return exposer.Result{Phase: exposer.ReasonCanceled, Message: "stopped: " + err.Error()}
	}
	msg := err.Error()
	if errors.Is(err, repository.ErrWrongPassword) {
		msg += " (the password in Secret velero-repo-credentials does not open the repository)"
	}
	return exposer.Result{Phase: exposer.ReasonFailed, Message: msg}
}

func snapshotName(du *velerov2alpha1.DataUpload) string {
	if du.Spec.CSISnapshot != nil {
		return du.Spec.CSISnapshot.VolumeSnapshot
	}
	return ""
}

// progress updates the Progress Event, at most every progressInterval.
func (m *mover) progress(ctx context.Context, p shared.DataMoveOperationProgress) {
	now := time.Now()
	if now.Sub(m.progressSent) < progressInterval {
		return
	}
	m.progressSent = now
	data, err := json.Marshal(p)
	if err != nil {
		return
	}
	msg := fmt.Sprintf("%d of %d bytes, %d of %d files", p.BytesDone, p.TotalBytes, p.FilesDone, p.TotalFiles)
	m.event(ctx, corev1.EventTypeNormal, exposer.ReasonProgress, msg, map[string]string{exposer.AnnotationProgress: string(data)})
}

// report writes the result's Event.
func (m *mover) report(ctx context.Context, res exposer.Result) {
	if m.obj == nil {
		return
	}
	kind := corev1.EventTypeNormal
	if res.Phase != exposer.ReasonCompleted {
		kind = corev1.EventTypeWarning
	}
	msg := res.Message
	if res.SnapshotID != "" {
		msg = "snapshot " + res.SnapshotID + ": " + msg
	}
	m.event(ctx, kind, res.Phase, msg, map[string]string{exposer.AnnotationResult: res.Encode()})
}

// event writes an Event on the operation, labelled as its mover's. Progress is one Event, updated
// in place; the others are new Events each. Events are best effort: the result also goes to the
// termination message.
func (m *mover) event(ctx context.Context, kind, reason, msg string, annotations map[string]string) {
	if m.obj == nil {
		return
	}
	now := metav1.NewTime(time.Now())
	gvk, _ := m.client.GroupVersionKindFor(m.obj)
	name := m.obj.GetName() + "." + strconv.FormatInt(now.UnixNano(), 16)
	if reason == exposer.ReasonProgress {
		name = exposer.ProgressEventName(m.obj.GetName())
	}
	ev := &corev1.Event{}
	err := m.client.Get(ctx, client.ObjectKey{Namespace: m.opts.Namespace, Name: name}, ev)
	if err != nil && !apierrors.IsNotFound(err) {
		return
	}
	exists := err == nil
	ev.Namespace, ev.Name = m.opts.Namespace, name
	ev.Labels = map[string]string{exposer.LabelOperation: string(m.obj.GetUID())}
	ev.Annotations = annotations
	ev.InvolvedObject = corev1.ObjectReference{Kind: gvk.Kind, APIVersion: gvk.GroupVersion().String(), Namespace: m.obj.GetNamespace(),
		Name: m.obj.GetName(), UID: m.obj.GetUID()}
	ev.Reason, ev.Message, ev.Type = reason, msg, kind
	ev.Source = corev1.EventSource{Component: exposer.MoverComponent, Host: m.opts.NodeName}
	ev.ReportingController, ev.ReportingInstance = "ferry.io/"+exposer.MoverComponent, m.opts.PodName
	ev.LastTimestamp = now
	if !exists {
		ev.FirstTimestamp, ev.Count = now, 1
		_ = m.client.Create(ctx, ev)
		return
	}
	ev.Count++
	_ = m.client.Update(ctx, ev)
}
