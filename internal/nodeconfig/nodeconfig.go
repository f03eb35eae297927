// Package nodeconfig provides the node-agent ConfigMap (named node-agent, in the install
// namespace): its keys, their defaults, and the one function that parses them.
package nodeconfig

import (
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// ConfigMapName is the name of the ConfigMap in the install namespace.
const ConfigMapName = "node-agent"

// Keys of the ConfigMap, as in the seed document.
const (
	KeyConcurrentRepoOperations         = "concurrentRepoOperations"
	KeyParallelFilesUpload              = "parallelFilesUpload"
	KeyBackupRepositoryLockCheckTimeout = "backupRepositoryLockCheckTimeout"
	KeyKeepLatestMaintenance            = "keepLatestMaintenance"
	KeyPrepareQueueLength               = "prepareQueueLength"
	KeyPodResources                     = "podResources"
	KeyMaintenanceJobResources          = "maintenanceJobResources"
	KeyMaintenanceJobTimeout            = "maintenanceJobTimeout"
)

// keys are every key the ConfigMap may hold.
var keys = []string{KeyConcurrentRepoOperations, KeyParallelFilesUpload, KeyBackupRepositoryLockCheckTimeout,
	KeyKeepLatestMaintenance, KeyPrepareQueueLength, KeyPodResources, KeyMaintenanceJobResources, KeyMaintenanceJobTimeout}

// Config is the node-agent's run-time configuration.
type Config struct {
	// ConcurrentRepoOperations is how many backups and restores run at once on one node; the
	// rest wait, visibly, for a slot.
	ConcurrentRepoOperations int
	// ParallelFilesUpload is the number of files each operation reads and uploads at once.
	ParallelFilesUpload int
	// BackupRepositoryLockCheckTimeout is how long opening a repository waits while another
	// process holds its exclusive lock (full maintenance, password change).
	BackupRepositoryLockCheckTimeout time.Duration
	// KeepLatestMaintenance is how many maintenance records a BackupRepository keeps.
	KeepLatestMaintenance int
	// PrepareQueueLength bounds the data movements (DataUploads and DataDownloads) this node's
	// agent has accepted and is preparing (snapshot taken over, volume and mover pod being
	// created) but that do not run yet, so that mover pods do not pile up idle.
	PrepareQueueLength int
	// PodResources are the data mover pods' requests and limits, Velero's field names in JSON:
	// {"cpuRequest":"500m","cpuLimit":"","memoryRequest":"512Mi","memoryLimit":"2Gi"}; nil: the
	// node-agent's defaults. A field left out or empty has no request or limit.
	PodResources *corev1.ResourceRequirements
	// MaintenanceJobResources are the requests and limits of the repository maintenance Jobs'
	// pods, in the same JSON as PodResources; nil: ferry-server's defaults.
	MaintenanceJobResources *corev1.ResourceRequirements
	// MaintenanceJobTimeout bounds one maintenance Job (its activeDeadlineSeconds).
	MaintenanceJobTimeout time.Duration
}

// podResources is the podResources key's JSON, as Velero's node-agent configuration has it.
type podResources struct {
	CPURequest    string `json:"cpuRequest,omitempty"`
	CPULimit      string `json:"cpuLimit,omitempty"`
	MemoryRequest string `json:"memoryRequest,omitempty"`
	MemoryLimit   string `json:"memoryLimit,omitempty"`
}

// parsePodResources reads the value of key, podResources or maintenanceJobResources.
func parsePodResources(key, v string) (*corev1.ResourceRequirements, error) {
	var p podResources
	dec := json.NewDecoder(strings.NewReader(v))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("%s: %w (want JSON such as {\"cpuRequest\":\"500m\",\"memoryRequest\":\"512Mi\",\"memoryLimit\":\"2Gi\"})", key, err)
	}
	res := &corev1.ResourceRequirements{Requests: corev1.ResourceList{}, Limits: corev1.ResourceList{}}
	var errs []error
	set := func(field, value string, list corev1.ResourceList, name corev1.ResourceName) {
		if value == "" {
			return
		}
		q, err := resource.ParseQuantity(value)
		if err != nil || q.Sign() <= 0 {
			errs = append(errs, fmt.Errorf("%s.%s: %q is not a positive quantity such as 500m or 512Mi", key, field, value))
			return
		}
		list[name] = q
	}
	set("cpuRequest", p.CPURequest, res.Requests, corev1.ResourceCPU)
	set("cpuLimit", p.CPULimit, res.Limits, corev1.ResourceCPU)
	set("memoryRequest", p.MemoryRequest, res.Requests, corev1.ResourceMemory)
	set("memoryLimit", p.MemoryLimit, res.Limits, corev1.ResourceMemory)
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, hasReq := res.Requests[name]
		lim, hasLim := res.Limits[name]
		if hasReq && hasLim && req.Cmp(lim) > 0 {
			errs = append(errs, fmt.Errorf("%s: the %s request %s is above its limit %s", key, name, req.String(), lim.String()))
		}
	}
	return res, errors.Join(errs...)
}

// Default is the configuration when the ConfigMap or a key is absent.
func Default() Config {
	return Config{
		ConcurrentRepoOperations:         1,
		ParallelFilesUpload:              runtime.GOMAXPROCS(0), // the CPUs this process may use (container limits included)
		BackupRepositoryLockCheckTimeout: time.Minute,
		KeepLatestMaintenance:            3,
		PrepareQueueLength:               4,
		MaintenanceJobTimeout:            12 * time.Hour,
	}
}

// Parse reads the ConfigMap's data over the defaults. Every invalid value is reported, each
// naming its key; unknown keys are errors too (a typo would otherwise be ignored silently).
func Parse(data map[string]string) (Config, error) {
	c := Default()
	var errs []error
	positive := func(key string, dst *int) {
		v, ok := data[key]
		if !ok {
			return
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			errs = append(errs, fmt.Errorf("%s: %q is not a whole number of at least 1", key, v))
			return
		}
		*dst = n
	}
	positive(KeyConcurrentRepoOperations, &c.ConcurrentRepoOperations)
	positive(KeyParallelFilesUpload, &c.ParallelFilesUpload)
	positive(KeyKeepLatestMaintenance, &c.KeepLatestMaintenance)
	positive(KeyPrepareQueueLength, &c.PrepareQueueLength)
	duration := func(key string, dst *time.Duration, least time.Duration, example string) {
		v, ok := data[key]
		if !ok {
			return
		}
		d, err := time.ParseDuration(v)
		if err != nil || d < least {
			errs = append(errs, fmt.Errorf("%s: %q is not a duration of at least %s such as %s", key, v, least, example))
			return
		}
		*dst = d
	}
	duration(KeyBackupRepositoryLockCheckTimeout, &c.BackupRepositoryLockCheckTimeout, 0, "1m or 30s")
	duration(KeyMaintenanceJobTimeout, &c.MaintenanceJobTimeout, time.Minute, "12h")
	resources := func(key string, dst **corev1.ResourceRequirements) {
		v, ok := data[key]
		if !ok {
			return
		}
		res, err := parsePodResources(key, v)
		if err != nil {
			errs = append(errs, err)
			return
		}
		*dst = res
	}
	resources(KeyPodResources, &c.PodResources)
	resources(KeyMaintenanceJobResources, &c.MaintenanceJobResources)
	var unknown []string
	for k := range data {
		if !slices.Contains(keys, k) {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		errs = append(errs, fmt.Errorf("%s: unknown key (known: %s)", k, strings.Join(keys, ", ")))
	}
	if len(errs) > 0 {
		return Config{}, errors.Join(errs...)
	}
	return c, nil
}
