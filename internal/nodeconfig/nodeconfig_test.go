package nodeconfig

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
)

func TestParse(t *testing.T) {
	seed := map[string]string{
		"concurrentRepoOperations": "3", "parallelFilesUpload": "10",
		"backupRepositoryLockCheckTimeout": "1m", "keepLatestMaintenance": "3", "prepareQueueLength": "2",
	}
	got, err := Parse(seed)
	want := Config{ConcurrentRepoOperations: 3, ParallelFilesUpload: 10, BackupRepositoryLockCheckTimeout: time.Minute, KeepLatestMaintenance: 3, PrepareQueueLength: 2,
		MaintenanceJobTimeout: Default().MaintenanceJobTimeout}
	if err != nil || got != want {
		t.Fatalf("seed example: %+v, %v; want %+v", got, err, want)
	}
	if got, err := Parse(nil); err != nil || got != Default() {
		t.Fatalf("empty: %+v, %v; want the defaults", got, err)
	}
	if got, _ := Parse(map[string]string{"parallelFilesUpload": "4"}); got.ConcurrentRepoOperations != Default().ConcurrentRepoOperations || got.ParallelFilesUpload != 4 {
		t.Fatalf("one key: %+v", got)
	}
	bad := []struct {
		data map[string]string
		key  string
	}{
		{map[string]string{"concurrentRepoOperations": "0"}, "concurrentRepoOperations"},
		{map[string]string{"parallelFilesUpload": "ten"}, "parallelFilesUpload"},
		{map[string]string{"backupRepositoryLockCheckTimeout": "1 minute"}, "backupRepositoryLockCheckTimeout"},
		{map[string]string{"backupRepositoryLockCheckTimeout": "-5s"}, "backupRepositoryLockCheckTimeout"},
		{map[string]string{"keepLatestMaintenance": "-1"}, "keepLatestMaintenance"},
		{map[string]string{"prepareQueueLength": "0"}, "prepareQueueLength"},
		{map[string]string{"concurrentRepoOperation": "2"}, "concurrentRepoOperation: unknown key"},
		{map[string]string{"podResources": `{"memoryLimit":"lots"}`}, "podResources.memoryLimit"},
		{map[string]string{"podResources": `{"cpuRequest":"2","cpuLimit":"1"}`}, "cpu request 2 is above its limit 1"},
		{map[string]string{"podResources": `{"memLimit":"1Gi"}`}, `podResources: json: unknown field "memLimit"`},
		{map[string]string{"podResources": `1Gi`}, "podResources"},
		{map[string]string{"maintenanceJobResources": `{"memoryRequest":"1Gi","memoryLimit":"512Mi"}`}, "maintenanceJobResources: the memory request 1Gi is above its limit 512Mi"},
		{map[string]string{"maintenanceJobTimeout": "30s"}, "maintenanceJobTimeout"},
		{map[string]string{"maintenanceJobTimeout": "daily"}, "maintenanceJobTimeout"},
	}
	for _, b := range bad {
		if _, err := Parse(b.data); err == nil || !strings.Contains(err.Error(), b.key) {
			t.Errorf("Parse(%v) = %v, want an error naming %s", b.data, err, b.key)
		}
	}
	_, err = Parse(map[string]string{"concurrentRepoOperations": "x", "keepLatestMaintenance": "y"})
	if err == nil || !strings.Contains(err.Error(), "concurrentRepoOperations") || !strings.Contains(err.Error(), "keepLatestMaintenance") {
		t.Errorf("two bad keys: %v, want both named", err)
	}
}

// podResources takes Velero's JSON: what is set becomes a request or limit, what is left out has none.
func TestParsePodResources(t *testing.T) {
	got, err := Parse(map[string]string{"podResources": `{"cpuRequest":"500m","memoryRequest":"256Mi","memoryLimit":"1Gi"}`})
	if err != nil {
		t.Fatal(err)
	}
	want := corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("256Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")},
	}
	if got.PodResources == nil || !equality.Semantic.DeepEqual(*got.PodResources, want) {
		t.Fatalf("podResources = %+v, want %+v", got.PodResources, want)
	}
	if d, _ := Parse(nil); d.PodResources != nil || d.MaintenanceJobResources != nil {
		t.Fatal("podResources, maintenanceJobResources without the key: want nil (the defaults)")
	}
	got, err = Parse(map[string]string{"maintenanceJobResources": `{"memoryLimit":"4Gi"}`, "maintenanceJobTimeout": "2h"})
	if err != nil || got.MaintenanceJobResources == nil || !got.MaintenanceJobResources.Limits.Memory().Equal(resource.MustParse("4Gi")) ||
		got.MaintenanceJobTimeout != 2*time.Hour {
		t.Fatalf("maintenance job settings: %+v, %v", got, err)
	}
}
