package crd_test

import (
	"fmt"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"

	"github.com/ferry-backup/ferry/internal/testenv"
)

// TestInvalidObjectsAreRejected sends objects with mistakes a user or a buggy client makes and
// expects the API server to refuse them with a message that names the field.
func TestInvalidObjectsAreRejected(t *testing.T) {
	cases := []struct {
		name string
		doc  string
		// status, when set, is written through the status subresource after a valid create.
		status string
		want   []string
	}{
		{
			name: "data upload with a bad duration",
			doc: `{apiVersion: velero.io/v2alpha1, kind: DataUpload, metadata: {name: x}, spec: {snapshotType: CSI,
			       csiSnapshot: {volumeSnapshot: s, storageClass: c}, sourcePVC: p, sourceNamespace: app,
			       backupStorageLocation: default, operationTimeout: "10 minutes"}}`,
			want: []string{"spec.operationTimeout", "should match"},
		},
		{
			name: "data upload with a negative duration",
			doc: `{apiVersion: velero.io/v2alpha1, kind: DataUpload, metadata: {name: x}, spec: {snapshotType: CSI,
			       csiSnapshot: {volumeSnapshot: s, storageClass: c}, sourcePVC: p, sourceNamespace: app,
			       backupStorageLocation: default, operationTimeout: "-5m"}}`,
			want: []string{"spec.operationTimeout"},
		},
		{
			// The pattern alone passes it, and then Go cannot parse it: every typed List of the
			// kind would fail.
			name: "data upload with a duration too large for Go",
			doc: `{apiVersion: velero.io/v2alpha1, kind: DataUpload, metadata: {name: x}, spec: {snapshotType: CSI,
			       csiSnapshot: {volumeSnapshot: s, storageClass: c}, sourcePVC: p, sourceNamespace: app,
			       backupStorageLocation: default, operationTimeout: "9999999999h"}}`,
			want: []string{"spec.operationTimeout"},
		},
		{
			name: "backup with a TTL of more than a hundred years",
			doc:  `{apiVersion: velero.io/v1, kind: Backup, metadata: {name: x}, spec: {ttl: "876001h"}}`,
			want: []string{"spec.ttl", "at most 876000h"},
		},
		{
			name: "location checked less often than a hundred years, in nanoseconds",
			doc: `{apiVersion: velero.io/v1, kind: BackupStorageLocation, metadata: {name: x}, spec: {provider: aws,
			       objectStorage: {bucket: b}, validationFrequency: "99999999999999999999ns"}}`,
			want: []string{"spec.validationFrequency"},
		},
		{
			name: "backup with more parallel uploads than the maximum",
			doc:  `{apiVersion: velero.io/v1, kind: Backup, metadata: {name: x}, spec: {uploaderConfig: {parallelFilesUpload: 100000}}}`,
			want: []string{"spec.uploaderConfig.parallelFilesUpload", "less than or equal to 1024"},
		},
		{
			name: "schedule whose template keeps backups more than a hundred years",
			doc:  `{apiVersion: velero.io/v1, kind: Schedule, metadata: {name: x}, spec: {schedule: "@daily", template: {ttl: "876001h"}}}`,
			want: []string{"spec.template.ttl", "at most 876000h"},
		},
		{
			name: "schedule without a cron expression",
			doc:  `{apiVersion: velero.io/v1, kind: Schedule, metadata: {name: x}, spec: {template: {}}}`,
			want: []string{"spec.schedule", "Required value"},
		},
		{
			name: "data upload without a source PVC",
			doc: `{apiVersion: velero.io/v2alpha1, kind: DataUpload, metadata: {name: x}, spec: {snapshotType: CSI,
			       csiSnapshot: {volumeSnapshot: s, storageClass: c}, sourceNamespace: app,
			       backupStorageLocation: default, operationTimeout: 10m}}`,
			want: []string{"spec.sourcePVC", "Required value"},
		},
		{
			name: "data upload of an unknown snapshot type",
			doc: `{apiVersion: velero.io/v2alpha1, kind: DataUpload, metadata: {name: x}, spec: {snapshotType: LVM,
			       sourcePVC: p, sourceNamespace: app, backupStorageLocation: default, operationTimeout: 10m}}`,
			want: []string{"spec.snapshotType", "Unsupported value"},
		},
		{
			name: "CSI data upload without the snapshot",
			doc: `{apiVersion: velero.io/v2alpha1, kind: DataUpload, metadata: {name: x}, spec: {snapshotType: CSI,
			       sourcePVC: p, sourceNamespace: app, backupStorageLocation: default, operationTimeout: 10m}}`,
			want: []string{"csiSnapshot.volumeSnapshot is required"},
		},
		{
			name: "data upload status with an unknown phase",
			doc: `{apiVersion: velero.io/v2alpha1, kind: DataUpload, metadata: {name: x}, spec: {snapshotType: CSI,
			       csiSnapshot: {volumeSnapshot: s, storageClass: c}, sourcePVC: p, sourceNamespace: app,
			       backupStorageLocation: default, operationTimeout: 10m}}`,
			status: `{phase: Running}`,
			want:   []string{"status.phase", "Unsupported value"},
		},
		{
			name: "data download without a target PVC",
			doc: `{apiVersion: velero.io/v2alpha1, kind: DataDownload, metadata: {name: x}, spec: {targetVolume: {pv: "", namespace: app},
			       backupStorageLocation: default, snapshotID: k1, sourceNamespace: app, operationTimeout: 10m}}`,
			want: []string{"spec.targetVolume.pvc", "Required value"},
		},
		{
			name: "pod volume backup with an unknown uploader",
			doc: `{apiVersion: velero.io/v1, kind: PodVolumeBackup, metadata: {name: x}, spec: {node: n1,
			       pod: {namespace: app, name: web-0}, volume: data, backupStorageLocation: default, repoIdentifier: "", uploaderType: rustic}}`,
			want: []string{"spec.uploaderType", "Unsupported value"},
		},
		{
			name: "pod volume backup without a node",
			doc: `{apiVersion: velero.io/v1, kind: PodVolumeBackup, metadata: {name: x}, spec: {
			       pod: {namespace: app, name: web-0}, volume: data, backupStorageLocation: default, repoIdentifier: ""}}`,
			want: []string{"spec.node", "Required value"},
		},
		{
			name: "pod volume backup of a pod without a name",
			doc: `{apiVersion: velero.io/v1, kind: PodVolumeBackup, metadata: {name: x}, spec: {node: n1,
			       pod: {namespace: app}, volume: data, backupStorageLocation: default, repoIdentifier: ""}}`,
			want: []string{"spec.pod", "pod.name is required"},
		},
		{
			name: "pod volume restore without a snapshot",
			doc: `{apiVersion: velero.io/v1, kind: PodVolumeRestore, metadata: {name: x}, spec: {
			       pod: {namespace: app, name: web-0}, volume: data, backupStorageLocation: default, repoIdentifier: "", sourceNamespace: app}}`,
			want: []string{"spec.snapshotID", "Required value"},
		},
		{
			name: "storage location with an unknown access mode",
			doc: `{apiVersion: velero.io/v1, kind: BackupStorageLocation, metadata: {name: x}, spec: {provider: aws,
			       objectStorage: {bucket: b}, accessMode: WriteOnly}}`,
			want: []string{"spec.accessMode", "Unsupported value"},
		},
		{
			name: "storage location without object storage",
			doc:  `{apiVersion: velero.io/v1, kind: BackupStorageLocation, metadata: {name: x}, spec: {provider: aws}}`,
			want: []string{"spec.objectStorage", "Required value"},
		},
		{
			name: "filesystem storage location with a relative path",
			doc: `{apiVersion: velero.io/v1, kind: BackupStorageLocation, metadata: {name: x}, spec: {provider: filesystem,
			       objectStorage: {bucket: b}, config: {path: backups}}}`,
			want: []string{"config.path must be an absolute directory"},
		},
		{
			name: "backup repository with a bad maintenance frequency",
			doc: `{apiVersion: velero.io/v1, kind: BackupRepository, metadata: {name: x}, spec: {volumeNamespace: app,
			       backupStorageLocation: default, repositoryType: kopia, maintenanceFrequency: daily}}`,
			want: []string{"spec.maintenanceFrequency", "should match"},
		},
		{
			name: "backup with a bad ttl",
			doc:  `{apiVersion: velero.io/v1, kind: Backup, metadata: {name: x}, spec: {ttl: forever}}`,
			want: []string{"spec.ttl", "should match"},
		},
		{
			name: "backup with both label selector forms",
			doc: `{apiVersion: velero.io/v1, kind: Backup, metadata: {name: x}, spec: {labelSelector: {matchLabels: {a: b}},
			       orLabelSelectors: [{matchLabels: {c: d}}]}}`,
			want: []string{"labelSelector and orLabelSelectors cannot be used together"},
		},
		{
			name: "backup with a negative parallelism",
			doc:  `{apiVersion: velero.io/v1, kind: Backup, metadata: {name: x}, spec: {uploaderConfig: {parallelFilesUpload: -1}}}`,
			want: []string{"spec.uploaderConfig.parallelFilesUpload"},
		},
		{
			name: "restore without a backup",
			doc:  `{apiVersion: velero.io/v1, kind: Restore, metadata: {name: x}, spec: {includedNamespaces: [app]}}`,
			want: []string{"backupName (or scheduleName) is required"},
		},
	}
	c := testenv.Get(t).Client
	ctx := testenv.Context(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			obj := fromYAML(t, newNamespace(t), tc.doc)
			err := c.Create(ctx, obj)
			if tc.status != "" {
				if err != nil {
					t.Fatalf("the object before its bad status must be valid: %v", err)
				}
				obj.Object["status"] = fromYAML(t, "", tc.status).Object
				err = c.Status().Update(ctx, obj)
			}
			if err == nil {
				t.Fatal("the API server accepted the object")
			}
			if !apierrors.IsInvalid(err) {
				t.Fatalf("want an Invalid error, got %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// Every duration up to the maximum is accepted in the forms Go writes and parses, and a typed
// List of them decodes.
func TestDurationsUpToTheMaximumAreAccepted(t *testing.T) {
	c := testenv.Get(t).Client
	ctx := testenv.Context(t)
	ns := newNamespace(t)
	durations := []string{"0", "0s", "500ms", "1.5h", "1h30m0s", "720h", "876000h", "3153600000s"}
	for i, d := range durations {
		obj := fromYAML(t, ns, fmt.Sprintf(`{apiVersion: velero.io/v1, kind: Backup, metadata: {name: b%d}, spec: {ttl: %q}}`, i, d))
		if err := c.Create(ctx, obj); err != nil {
			t.Errorf("ttl %s: %v", d, err)
		}
	}
	list := &velerov1.BackupList{}
	if err := c.List(ctx, list, client.InNamespace(ns)); err != nil || len(list.Items) != len(durations) {
		t.Fatalf("typed list of %d backups: %d items, %v", len(durations), len(list.Items), err)
	}
}
