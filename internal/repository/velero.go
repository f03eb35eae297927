package repository

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/kopia/kopia/repo/blob"
	"github.com/kopia/kopia/repo/format"
	"github.com/kopia/kopia/repo/hashing"
	"github.com/kopia/kopia/snapshot/policy"
)

// A repository in Velero's layout (Location.Namespace set) is one Velero 1.18 can take over, and
// one Velero made: Velero connects as default@default, creates repositories with Kopia's default
// formats, records default@default as their maintenance owner, writes no global policy, and
// marks a repository it initialized with the blob udmrepo.Repository, which holds the format
// blob's unique ID (pkg/repository/udmrepo/kopialib/repo_init.go); without that blob Velero
// takes the repository for uninitialized and writes its own maintenance parameters over ours.

// VeleroIdentity is the client identity of Velero's node-agents and server in its repositories;
// snapshots of pod volumes and data movements carry it.
var VeleroIdentity = Identity{Hostname: "default", Username: "default"}

// HashKopiaDefault is Kopia's default hash, which Velero's repositories use.
const HashKopiaDefault = hashing.DefaultAlgorithm

// veleroMarkerBlob is the blob Velero writes into the repositories it initialized.
const veleroMarkerBlob = "udmrepo.Repository"

// veleroLayout reports whether the location is a namespace's repository in Velero's layout.
func (l Location) veleroLayout() bool { return l.Namespace != "" }

// maintenanceOwner is the maintenance owner a repository is created with and that Ferry runs
// maintenance as without force.
func (l Location) maintenanceOwner() string {
	if l.veleroLayout() {
		return VeleroIdentity.Username + "@" + VeleroIdentity.Hostname
	}
	return MaintenanceOwner
}

// writeVeleroMarker writes udmrepo.Repository: {"uniqueID": <the format blob's unique ID>}.
func writeVeleroMarker(ctx context.Context, st blob.Storage) error {
	blobs, err := readFormatBlobs(ctx, st)
	if err != nil {
		return fmt.Errorf("read the format blob: %w", err)
	}
	f, err := format.ParseKopiaRepositoryJSON(blobs.repository)
	if err != nil {
		return fmt.Errorf("read the format blob: %w", err)
	}
	data, err := json.Marshal(struct {
		UniqueID []byte `json:"uniqueID"`
	}{f.UniqueID})
	if err != nil {
		return err
	}
	if err := st.PutBlob(ctx, veleroMarkerBlob, blobBytes(data), blob.PutOptions{}); err != nil {
		return fmt.Errorf("write %s: %w", veleroMarkerBlob, err)
	}
	return nil
}

// globalPolicy is the global policy a new repository gets, or nil for none (Velero's layout:
// Velero sets a policy per source before each snapshot and none globally).
func globalPolicy(loc Location) *policy.Policy {
	if loc.veleroLayout() {
		return nil
	}
	global := *policy.DefaultPolicy
	global.UploadPolicy.ParallelUploadAboveSize = newOptionalInt64(ParallelUploadAboveSize)
	return &global
}
