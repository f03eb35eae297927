package nodeconfig

import (
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	seed := map[string]string{
		"concurrentRepoOperations": "3", "parallelFilesUpload": "10",
		"backupRepositoryLockCheckTimeout": "1m", "keepLatestMaintenance": "3", "prepareQueueLength": "2",
	}
	got, err := Parse(seed)
	want := Config{ConcurrentRepoOperations: 3, ParallelFilesUpload: 10, BackupRepositoryLockCheckTimeout: time.Minute, KeepLatestMaintenance: 3, PrepareQueueLength: 2}
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
