package repository_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/kopia/kopia/repo/encryption"
	"github.com/kopia/kopia/repo/format"
	"github.com/kopia/kopia/repo/hashing"
	"github.com/kopia/kopia/repo/maintenance"
	"github.com/kopia/kopia/repo/splitter"
	"github.com/kopia/kopia/snapshot/policy"

	"github.com/ferry-backup/ferry/internal/repository"
	"github.com/ferry-backup/ferry/internal/repository/repotest"
)

// A repository Ferry creates in Velero's layout is one Velero 1.18 would have created: Kopia's
// default formats, maintenance owned by default@default, no global policy, and Velero's marker
// blob holding the format's unique ID (without it Velero re-initializes the repository); Ferry's
// maintenance runs there without force. Ferry's own layout keeps Ferry's choices.
func TestVeleroLayoutIsCreatedAsVeleroCreatesIt(t *testing.T) {
	loc := repotest.Filesystem(t).ForNamespace("app")
	r, err := open(t, loc, "static-passw0rd")
	if err != nil {
		t.Fatal(err)
	}
	cf := r.ContentReader().ContentFormat()
	if cf.GetHashFunction() != hashing.DefaultAlgorithm || cf.GetEncryptionAlgorithm() != encryption.DefaultAlgorithm ||
		r.ObjectFormat().Splitter != splitter.DefaultAlgorithm {
		t.Errorf("formats %s/%s/%s, want Kopia's defaults", cf.GetHashFunction(), cf.GetEncryptionAlgorithm(), r.ObjectFormat().Splitter)
	}
	if co := r.ClientOptions(); co.UsernameAtHost() != "default@default" {
		t.Errorf("connected as %s, want default@default", co.UsernameAtHost())
	}
	params, err := maintenance.GetParams(t.Context(), r)
	if err != nil || params.Owner != "default@default" {
		t.Errorf("maintenance owner %q (%v), want default@default", params.Owner, err)
	}
	if _, err := policy.GetDefinedPolicy(t.Context(), r, policy.GlobalPolicySourceInfo); !errors.Is(err, policy.ErrPolicyNotFound) {
		t.Errorf("global policy: %v, want none", err)
	}
	dir := filepath.Join(loc.Config["path"], loc.Bucket, loc.Prefix, "kopia", "app")
	var marker struct {
		UniqueID []byte `json:"uniqueID"`
	}
	data, err := os.ReadFile(filepath.Join(dir, "udmrepo.Repository.f"))
	if err == nil {
		err = json.Unmarshal(data, &marker)
	}
	if err != nil {
		t.Fatalf("Velero's marker blob: %v", err)
	}
	formatBlob, err := os.ReadFile(filepath.Join(dir, "kopia.repository.f"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := format.ParseKopiaRepositoryJSON(formatBlob)
	if err != nil || len(marker.UniqueID) == 0 || !slices.Equal(marker.UniqueID, f.UniqueID) {
		t.Errorf("marker unique ID %x, format's %x (%v)", marker.UniqueID, f.UniqueID, err)
	}
	if _, err := r.Maintain(t.Context(), repository.MaintenanceQuick, repository.MaintenanceOptions{}); err != nil {
		t.Errorf("quick maintenance of a repository in Velero's layout: %v", err)
	}

	own, err := open(t, repotest.Filesystem(t), "pw")
	if err != nil {
		t.Fatal(err)
	}
	if got := own.ContentReader().ContentFormat().GetHashFunction(); got != repository.HashBLAKE3 {
		t.Errorf("Ferry's layout: hash %s, want %s", got, repository.HashBLAKE3)
	}
}
