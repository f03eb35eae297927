package backuprepository

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/repository"
)

// AnnotationRequest on a maintenance Job is the AnnotationMaintenanceRequested value it answers;
// absent on scheduled runs.
const AnnotationRequest = "ferry.io/maintenance-request"

// requestChanged passes updates that change AnnotationMaintenanceRequested: a new request.
var requestChanged = predicate.Funcs{
	CreateFunc: func(event.CreateEvent) bool { return false },
	UpdateFunc: func(e event.UpdateEvent) bool {
		key := velerov1.AnnotationMaintenanceRequested
		return e.ObjectNew.GetAnnotations()[key] != e.ObjectOld.GetAnnotations()[key]
	},
	DeleteFunc:  func(event.DeleteEvent) bool { return false },
	GenericFunc: func(event.GenericEvent) bool { return false },
}

// ParseMaintenanceRequest reads an AnnotationMaintenanceRequested value, "<quick|full>@<time>":
// the mode it asks for.
func ParseMaintenanceRequest(value string) (string, error) {
	mode, at, _ := strings.Cut(value, "@")
	if at != "" {
		if _, err := time.Parse(time.RFC3339, at); err != nil {
			return "", fmt.Errorf("annotation %s=%q: the time after @ must be RFC 3339: %v", velerov1.AnnotationMaintenanceRequested, value, err)
		}
	}
	switch m := strings.TrimSpace(mode); m {
	case string(repository.MaintenanceQuick), string(repository.MaintenanceFull):
		return m, nil
	default:
		return "", fmt.Errorf("annotation %s=%q: the mode must be quick or full", velerov1.AnnotationMaintenanceRequested, value)
	}
}

// pendingRequest is the repository's maintenance request that no Job answers yet and that is
// not answered: "" when there is none.
func pendingRequest(br *velerov1.BackupRepository, jobs []batchv1.Job) string {
	value := br.Annotations[velerov1.AnnotationMaintenanceRequested]
	if value == "" {
		return ""
	}
	if last, ok := maintenanceAnswer(br); ok && last.Request == value {
		return ""
	}
	for i := range jobs {
		if jobs[i].Annotations[AnnotationRequest] == value {
			return ""
		}
	}
	return value
}

// maintenanceAnswer reads AnnotationMaintenanceAnswer; false when absent or unreadable.
func maintenanceAnswer(br *velerov1.BackupRepository) (velerov1.MaintenanceAnswer, bool) {
	var a velerov1.MaintenanceAnswer
	s, ok := br.Annotations[velerov1.AnnotationMaintenanceAnswer]
	return a, ok && json.Unmarshal([]byte(s), &a) == nil
}

// answer writes the result of a requested run into AnnotationMaintenanceAnswer.
func (r *Reconciler) answer(ctx context.Context, br *velerov1.BackupRepository, a velerov1.MaintenanceAnswer) error {
	data, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("encode the maintenance answer of %s: %w", br.Name, err)
	}
	patch := client.MergeFrom(br.DeepCopy())
	metav1.SetMetaDataAnnotation(&br.ObjectMeta, velerov1.AnnotationMaintenanceAnswer, string(data))
	if err := r.Client.Patch(ctx, br, patch); err != nil {
		return fmt.Errorf("answer the maintenance request of %s: %w", br.Name, err)
	}
	return nil
}

// requested returns the pending request and the mode it asks for; a request that cannot be read
// is answered at once and leaves none pending.
func (r *Reconciler) requested(ctx context.Context, br *velerov1.BackupRepository, jobs []batchv1.Job) (request, mode string, err error) {
	request = pendingRequest(br, jobs)
	if request == "" {
		return "", "", nil
	}
	mode, perr := ParseMaintenanceRequest(request)
	if perr != nil {
		now := r.Clock.Now()
		return "", "", r.answer(ctx, br, velerov1.MaintenanceAnswer{Request: request, Start: now, End: now, Message: perr.Error()})
	}
	return request, mode, nil
}
