// Package nodeconfig provides the node-agent ConfigMap (named node-agent, in the install
// namespace): its keys, their defaults, and the one function that parses them.
package nodeconfig

import (
	"errors"
	"fmt"
	"runtime"
	"sort"
	"strconv"
	"time"
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
)

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
}

// Default is the configuration when the ConfigMap or a key is absent.
func Default() Config {
	return Config{
		ConcurrentRepoOperations:         1,
		ParallelFilesUpload:              runtime.NumCPU(),
		BackupRepositoryLockCheckTimeout: time.Minute,
		KeepLatestMaintenance:            3,
		PrepareQueueLength:               4,
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
	if v, ok := data[KeyBackupRepositoryLockCheckTimeout]; ok {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			errs = append(errs, fmt.Errorf("%s: %q is not a duration such as 1m or 30s", KeyBackupRepositoryLockCheckTimeout, v))
		} else {
			c.BackupRepositoryLockCheckTimeout = d
		}
	}
	var unknown []string
	for k := range data {
		switch k {
		case KeyConcurrentRepoOperations, KeyParallelFilesUpload, KeyBackupRepositoryLockCheckTimeout, KeyKeepLatestMaintenance, KeyPrepareQueueLength:
		default:
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		errs = append(errs, fmt.Errorf("%s: unknown key (known: %s, %s, %s, %s, %s)", k, KeyConcurrentRepoOperations,
			KeyParallelFilesUpload, KeyBackupRepositoryLockCheckTimeout, KeyKeepLatestMaintenance, KeyPrepareQueueLength))
	}
	if len(errs) > 0 {
		return Config{}, errors.Join(errs...)
	}
	return c, nil
}
