package cli

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferry-backup/ferry/api/shared"
	velerov1 "github.com/ferry-backup/ferry/api/v1"
	velerov2alpha1 "github.com/ferry-backup/ferry/api/v2alpha1"
	"github.com/ferry-backup/ferry/internal/testenv"
)

// TestDescribeBackup describes a backup with a completed PodVolumeBackup and a failed
// DataUpload: every volume's figures, the failure's message, and with --details the objects.
func TestDescribeBackup(t *testing.T) {
	c, ctx := testenv.Get(t).Client, testenv.Context(t)
	ns := testenv.Namespace(t, "cli-describe")
	mustFerry(t, "-n", ns, "backup", "create", "b", "--include-namespaces", "app", "--snapshot-move-data")
	b := &velerov1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "b"}}
	if err := setStatus(ctx, c, b, func() {
		b.Status = velerov1.BackupStatus{Phase: velerov1.BackupPhasePartiallyFailed, StartTimestamp: at(0), CompletionTimestamp: at(30),
			Errors: 1, FailureReason: ""}
	}); err != nil {
		t.Fatal(err)
	}
	pvb := newPVB(ns, "b", "b-fs", "web-0", "node-1")
	if err := c.Create(ctx, pvb); err != nil {
		t.Fatal(err)
	}
	if err := setStatus(ctx, c, pvb, func() {
		pvb.Status = velerov1.PodVolumeBackupStatus{Phase: velerov1.PodVolumePhaseCompleted, SnapshotID: "k7f3a9", StartTimestamp: at(1),
			CompletionTimestamp: at(4), IncrementalBytes: 2 * mib,
			Progress: shared.DataMoveOperationProgress{TotalBytes: 10 * mib, BytesDone: 10 * mib, TotalFiles: 5, FilesDone: 5}}
	}); err != nil {
		t.Fatal(err)
	}
	du := newDataUpload(ns, "b", "b-dm", "db-data")
	if err := c.Create(ctx, du); err != nil {
		t.Fatal(err)
	}
	if err := setStatus(ctx, c, du, func() {
		du.Status = velerov2alpha1.DataUploadStatus{Phase: velerov2alpha1.DataMovePhaseFailed, Node: "node-2", StartTimestamp: at(2),
			CompletionTimestamp: at(9), Message: "snapshot volume not ready after 5m",
			Progress: shared.DataMoveOperationProgress{TotalBytes: 8 * mib, BytesDone: 1 * mib}}
	}); err != nil {
		t.Fatal(err)
	}
	// A volume of another backup is not shown.
	if err := c.Create(ctx, newPVB(ns, "other", "other-fs", "web-9", "node-9")); err != nil {
		t.Fatal(err)
	}

	out := mustFerry(t, "-n", ns, "backup", "describe", "b")
	t.Logf("describe:\n%s", out)
	for _, want := range []string{
		`Phase:\s+PartiallyFailed`, `Included namespaces:\s+app`, `Snapshot move data:\s+true`, `Duration:\s+30s`, `Errors:\s+1`,
		`Volumes: 2 \(1 completed, 1 failed, 0 canceled\), 11.0 MiB of 18.0 MiB`,
		`file system\s+app/web-0:data\s+data-web-0\s+node-1\s+Completed\s+k7f3a9\s+10.0 MiB / 10.0 MiB\s+5/5\s+2.0 MiB\s+3s`,
		`data mover\s+app/db-data\s+db-data\s+node-2\s+Failed\s+-\s+1.0 MiB / 8.0 MiB\s+-\s+0 B\s+7s`,
		`Volume errors:\n  pvc app/db-data: snapshot volume not ready after 5m`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("describe lacks %s", want)
		}
	}
	if strings.Contains(out, "web-9") || strings.Contains(out, "PodVolumeBackup/") {
		t.Errorf("describe without --details shows another backup's volume or object names:\n%s", out)
	}
	details := mustFerry(t, "-n", ns, "backup", "describe", "b", "--details")
	for _, want := range []string{"PodVolumeBackup/b-fs", "DataUpload/b-dm", "pvc app/db-data (DataUpload b-dm): snapshot volume not ready"} {
		if !strings.Contains(details, want) {
			t.Errorf("describe --details lacks %q:\n%s", want, details)
		}
	}
	if !strings.Contains(out, "Last verification:  <none> (`ferry backup verify b` runs one)") {
		t.Errorf("describe of a backup never verified:\n%s", out)
	}

	// The last verification, with its damaged volume, and a newer request not answered yet.
	end := time.Now().Add(-2 * time.Hour).UTC().Truncate(time.Second)
	res, _ := json.Marshal(velerov1.BackupVerification{Request: "100@2026-11-20T10:00:00Z", Backup: "b", Percent: 100, Job: "b-verify-x1y2z",
		Start: end.Add(-42 * time.Second), End: end, Completed: true, Errors: 2, Volumes: []velerov1.VolumeVerification{
			{Volume: "app/web-0/data", SnapshotID: "k7f3a9", Files: 5, FilesRead: 5, BytesRead: 10 * mib, Errors: 2,
				FirstErrors: []string{"/d0/f1.bin: content 3f9c in pack p0a1: invalid checksum"}},
			{Volume: "app/pvc/db-data", Message: "no snapshot: the volume failed"}}})
	patch := client.MergeFrom(b.DeepCopy())
	metav1.SetMetaDataAnnotation(&b.ObjectMeta, velerov1.AnnotationLastVerification, string(res))
	metav1.SetMetaDataAnnotation(&b.ObjectMeta, velerov1.AnnotationVerifyRequested, "10@2026-11-21T10:00:00Z")
	if err := c.Patch(ctx, b, patch); err != nil {
		t.Fatal(err)
	}
	out = mustFerry(t, "-n", ns, "backup", "describe", "b")
	t.Logf("describe after a verification:\n%s", out)
	for _, want := range []string{
		`Last verification:  Damaged, 2 damaged entries\n  Ended: .* \((2h|1[0-9][0-9]m) ago\), took 42s\n  Files read back:  100%\n  Job:\s+b-verify-x1y2z\n`,
		`A newer verification was requested \(10@2026-11-21T10:00:00Z\) and is not answered yet`,
		`  VOLUME\s+SNAPSHOT\s+FILES\s+READ\s+BYTES READ\s+ERRORS\n  app/web-0/data\s+k7f3a9\s+5\s+5\s+10485760\s+2\n`,
		`  app/pvc/db-data\s+0\s+0\s+0\s+0 \(no snapshot: the volume failed\)`,
		`  volume app/web-0/data: /d0/f1.bin: content 3f9c in pack p0a1: invalid checksum\n  volume app/web-0/data: 1 more damaged entries`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("describe lacks %s", want)
		}
	}
	if _, err := ferry(t, "-n", ns, "backup", "describe", "nope"); err == nil || !strings.Contains(err.Error(), `backup "nope" not found in namespace `+ns) {
		t.Errorf("describe of a missing backup: %v", err)
	}
}

// TestRestoreCreateGet checks the restore's spec, its default name, and that a missing backup
// is named before anything is created.
func TestRestoreCreateGet(t *testing.T) {
	c, ctx := testenv.Get(t).Client, testenv.Context(t)
	ns := testenv.Namespace(t, "cli-restore")
	if _, err := ferry(t, "-n", ns, "restore", "create", "r0", "--from-backup", "missing"); err == nil ||
		!strings.Contains(err.Error(), `--from-backup: backup "missing" not found`) {
		t.Errorf("restore of a missing backup: %v", err)
	}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "r0"}, &velerov1.Restore{}); err == nil {
		t.Error("restore r0 was created although its backup is missing")
	}
	mustFerry(t, "-n", ns, "backup", "create", "nightly")
	mustFerry(t, "-n", ns, "restore", "create", "r1", "--from-backup", "nightly", "--namespace-mappings", "app:app-copy,db:db-copy")
	r := &velerov1.Restore{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "r1"}, r); err != nil {
		t.Fatal(err)
	}
	if r.Spec.BackupName != "nightly" || len(r.Spec.NamespaceMapping) != 2 || r.Spec.NamespaceMapping["app"] != "app-copy" || r.Spec.NamespaceMapping["db"] != "db-copy" {
		t.Errorf("restore spec = %+v", r.Spec)
	}
	if _, err := ferry(t, "-n", ns, "restore", "create", "r2", "--from-backup", "nightly", "--namespace-mappings", "app"); err == nil {
		t.Error("a mapping without a colon was accepted")
	}
	out := mustFerry(t, "-n", ns, "restore", "create", "--from-backup", "nightly")
	if !regexp.MustCompile(`Restore nightly-\d{14} created`).MatchString(out) {
		t.Errorf("default name: %s", out)
	}
	if _, err := ferry(t, "-n", ns, "restore", "create", "r3", "--from-schedule", "hourly"); err == nil ||
		!strings.Contains(err.Error(), `--from-schedule: schedule "hourly" not found`) {
		t.Errorf("restore of a missing schedule: %v", err)
	}
	if _, err := ferry(t, "-n", ns, "restore", "create", "r4", "--from-schedule", "hourly", "--from-backup", "nightly"); err == nil {
		t.Error("a restore from both a backup and a schedule was accepted")
	}
	mustFerry(t, "-n", ns, "schedule", "create", "hourly", "--schedule", "@hourly", "--paused")
	mustFerry(t, "-n", ns, "restore", "create", "r5", "--from-schedule", "hourly")
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "r5"}, r); err != nil || r.Spec.ScheduleName != "hourly" || r.Spec.BackupName != "" {
		t.Errorf("restore from a schedule: spec %+v (%v); want scheduleName hourly for ferry-server to resolve", r.Spec, err)
	}
	if got := mustFerry(t, "-n", ns, "restore", "get", "r1", "-o", "jsonpath={.spec.backupName} {.spec.namespaceMapping.app}"); got != "nightly app-copy\n" {
		t.Errorf("restore get -o jsonpath = %q", got)
	}
	table := mustFerry(t, "-n", ns, "restore", "get", "-o", "wide")
	if !regexp.MustCompile(`r1\s+nightly\s+New`).MatchString(table) || !strings.Contains(table, "app:app-copy,db:db-copy") {
		t.Errorf("restore get -o wide:\n%s", table)
	}
	desc := mustFerry(t, "-n", ns, "restore", "describe", "r1")
	if !regexp.MustCompile(`Backup:\s+nightly`).MatchString(desc) || !regexp.MustCompile(`Namespace mappings:\s+app:app-copy, db:db-copy`).MatchString(desc) ||
		!strings.Contains(desc, "Volumes: 0") {
		t.Errorf("restore describe:\n%s", desc)
	}
}

// TestLocationsAndRepositories creates, lists and changes locations, and lists repositories.
func TestLocationsAndRepositories(t *testing.T) {
	c, ctx := testenv.Get(t).Client, testenv.Context(t)
	ns := testenv.Namespace(t, "cli-bsl")
	mustFerry(t, "-n", ns, "backup-location", "create", "s3", "--provider", "aws", "--bucket", "backups", "--prefix", "ferry",
		"--config", "region=us-east-1,s3ForcePathStyle=true", "--credential", "cloud-credentials=cloud", "--default")
	bsl := &velerov1.BackupStorageLocation{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "s3"}, bsl); err != nil {
		t.Fatal(err)
	}
	s := bsl.Spec
	if s.Provider != "aws" || s.ObjectStorage.Bucket != "backups" || s.ObjectStorage.Prefix != "ferry" || !s.Default ||
		s.Config["region"] != "us-east-1" || s.Config["s3ForcePathStyle"] != "true" || s.Credential == nil ||
		s.Credential.Name != "cloud-credentials" || s.Credential.Key != "cloud" {
		t.Errorf("location spec = %+v", s)
	}
	if _, err := ferry(t, "-n", ns, "backup-location", "create", "gcs", "--provider", "gcp", "--bucket", "x"); err == nil || !strings.Contains(err.Error(), "--provider") {
		t.Errorf("unknown provider: %v", err)
	}
	if _, err := ferry(t, "-n", ns, "backup-location", "create", "disk", "--provider", "filesystem", "--bucket", "x", "--default"); err == nil ||
		!strings.Contains(err.Error(), "s3 is already the default") {
		t.Errorf("a second default: %v", err)
	}
	mustFerry(t, "-n", ns, "backup-location", "create", "disk", "--provider", "filesystem", "--bucket", "x", "--config", "path=/backups")
	mustFerry(t, "-n", ns, "backup-location", "set", "disk", "--default", "--credential", "disk-cred=key")
	for name, want := range map[string]bool{"s3": false, "disk": true} {
		l := &velerov1.BackupStorageLocation{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, l); err != nil {
			t.Fatal(err)
		}
		if l.Spec.Default != want {
			t.Errorf("%s default = %v, want %v", name, l.Spec.Default, want)
		}
		if name == "disk" && (l.Spec.Credential == nil || l.Spec.Credential.Name != "disk-cred") {
			t.Errorf("disk credential = %+v", l.Spec.Credential)
		}
	}
	table := mustFerry(t, "-n", ns, "backup-location", "get")
	if !regexp.MustCompile(`disk\s+filesystem\s+x\s+Unknown\s+<never>\s+ReadWrite\s+true`).MatchString(table) ||
		!regexp.MustCompile(`s3\s+aws\s+backups/ferry`).MatchString(table) {
		t.Errorf("backup-location get:\n%s", table)
	}

	repo := &velerov1.BackupRepository{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app-s3-kopia"},
		Spec: velerov1.BackupRepositorySpec{VolumeNamespace: "app", BackupStorageLocation: "s3", RepositoryType: "kopia",
			MaintenanceFrequency: shared.Duration{Duration: 3600e9}}}
	if err := c.Create(ctx, repo); err != nil {
		t.Fatal(err)
	}
	if err := setStatus(ctx, c, repo, func() {
		repo.Status = velerov1.BackupRepositoryStatus{Phase: velerov1.BackupRepositoryPhaseNotReady, Message: "bucket backups: access denied",
			RecentMaintenance: []velerov1.BackupRepositoryMaintenanceStatus{{Result: velerov1.BackupRepositoryMaintenanceFailed, Message: "quick: access denied"}}}
	}); err != nil {
		t.Fatal(err)
	}
	wide := mustFerry(t, "-n", ns, "repo", "get", "-o", "wide")
	if !regexp.MustCompile(`app-s3-kopia\s+s3\s+app\s+NotReady\s+<never>\s+bucket backups: access denied\s+kopia\s+1h0m0s\s+` +
		`<unknown>\s+<unknown>\s+<unknown>\s+<unknown>\s+<unknown>\s+<unknown>\s+0s\s+Failed: quick: access denied`).MatchString(wide) {
		t.Errorf("repo get -o wide:\n%s", wide)
	}
	// A repository its maintenance Jobs measured, whose maintenance last succeeded 5 hours ago:
	// 4 hours behind its hourly schedule.
	now := time.Now()
	quick, full := now.Add(-5*time.Hour).UTC(), now.Add(-30*time.Hour).UTC()
	stats, err := json.Marshal(velerov1.RepositoryStats{Measured: quick, SizeBytes: 6 << 20, Snapshots: 12, DedupRatio: 2.5,
		ReclaimableBytes: 1 << 20, LastQuick: &quick, LastFull: &full})
	if err != nil {
		t.Fatal(err)
	}
	measured := &velerov1.BackupRepository{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "disk-kopia",
		Annotations: map[string]string{velerov1.AnnotationRepositoryStats: string(stats)}},
		Spec: velerov1.BackupRepositorySpec{BackupStorageLocation: "disk", VolumeNamespace: "web", RepositoryType: "kopia", MaintenanceFrequency: shared.Duration{Duration: 3600e9}}}
	if err := c.Create(ctx, measured); err != nil {
		t.Fatal(err)
	}
	if err := setStatus(ctx, c, measured, func() {
		measured.Status = velerov1.BackupRepositoryStatus{Phase: velerov1.BackupRepositoryPhaseReady, LastMaintenanceTime: &metav1.Time{Time: quick}}
	}); err != nil {
		t.Fatal(err)
	}
	wide = mustFerry(t, "-n", ns, "repo", "get", "disk-kopia", "-o", "wide")
	if !regexp.MustCompile(`disk-kopia\s+disk\s+web\s+Ready\s+5h\d*m? ago\s+<none>\s+kopia\s+1h0m0s\s+` +
		`6\.0 MiB\s+12\s+2\.50\s+1\.0 MiB\s+5h\d*m? ago\s+30h ago\s+4h\d*m?\s+<none>`).MatchString(wide) {
		t.Errorf("repo get -o wide of a measured repository:\n%s", wide)
	}
	described := mustFerry(t, "-n", ns, "repo", "describe", "disk-kopia")
	for _, want := range []string{`Location:\s+disk\n`, `Maintenance:\s+every 1h0m0s, last succeeded 5h\d*m? ago, lag 4h`, `Last full:\s+30h ago`,
		`Size:\s+6\.0 MiB`, `Snapshots:\s+12,`, `deduplication ratio 2\.50`, `Reclaimable:\s+1\.0 MiB`, `Recent maintenance: <none>`} {
		if !regexp.MustCompile(want).MatchString(described) {
			t.Errorf("repo describe: want %s in\n%s", want, described)
		}
	}
	if narrow := mustFerry(t, "-n", ns, "repo", "get"); strings.Contains(narrow, "MAINTENANCE FREQUENCY") || !strings.Contains(narrow, "LAST MAINTENANCE") {
		t.Errorf("repo get:\n%s", narrow)
	}
}
