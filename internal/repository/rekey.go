package repository

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/kopia/kopia/repo/format"
)

// A password change rewrites two blobs one after the other: kopia.blobcfg under the new key,
// then kopia.repository. A process that dies between the two leaves a repository that neither
// password opens — kopia.repository still takes the old one, kopia.blobcfg only the new one.
// RepairInterruptedRekey puts kopia.blobcfg back under the old password, so that the old one
// opens it again and the change can be made anew.

// ErrInterruptedRekey is returned by Open when the repository is in that state.
var ErrInterruptedRekey = errors.New("a password change was interrupted between Kopia's two format blobs")

// interruptedRekey reports whether err is Kopia's failure to decrypt kopia.blobcfg after
// kopia.repository was decrypted with the same password.
func interruptedRekey(err error) bool {
	return err != nil && strings.Contains(err.Error(), "unable to decrypt repository blobcfg blob")
}

// RepairInterruptedRekey rewrites kopia.blobcfg under oldPassword, the password that still
// opens kopia.repository, after a change to newPassword stopped between the two blobs. The blob
// keeps what it holds — the storage's retention settings, if someone set them with the kopia
// CLI — read with whichever of the two passwords decrypts it. It holds the repository's exclusive
// lock, checks first that the repository is in the interrupted state, and reports whether it
// repaired anything.
func RepairInterruptedRekey(ctx context.Context, opts Options, oldPassword, newPassword string) (bool, error) {
	opts.Password = oldPassword
	if err := opts.applyDefaults(); err != nil {
		return false, err
	}
	lock := &exclusiveLock{location: opts.Location}
	held, err := lock.acquire(ctx, opts.Identity.Username+"@"+opts.Identity.Hostname, "password change repair")
	if err != nil {
		return false, err
	}
	defer held.release()
	repaired, err := repairBlobCfg(held.ctx, opts.Location, oldPassword, newPassword)
	if err != nil {
		return false, fmt.Errorf("repair the interrupted password change of %s: %w", opts.Location, held.explain(err))
	}
	return repaired, nil
}

func repairBlobCfg(ctx context.Context, loc Location, oldPassword, newPassword string) (bool, error) {
	st, err := loc.storage(ctx, false)
	if err != nil {
		return false, err
	}
	defer st.Close(ctx) //nolint:errcheck // written blobs are flushed by PutBlob
	f, err := readFormatBlobs(ctx, st)
	if err != nil {
		return false, fmt.Errorf("read the format blobs: %w", err)
	}
	if f.opens(ctx, oldPassword) || !(&formatBlobs{repository: f.repository}).opens(ctx, oldPassword) {
		return false, nil // not interrupted, or not by a change from oldPassword
	}
	cfg, err := f.blobCfgContent(ctx, oldPassword, newPassword)
	if err != nil {
		return false, err
	}
	j, err := format.ParseKopiaRepositoryJSON(f.repository)
	if err != nil {
		return false, fmt.Errorf("parse %s: %w", format.KopiaRepositoryBlobID, err)
	}
	key, err := j.DeriveFormatEncryptionKeyFromPassword(oldPassword)
	if err != nil {
		return false, err
	}
	if err := j.WriteBlobCfgBlob(ctx, st, cfg, key); err != nil {
		return false, fmt.Errorf("rewrite %s: %w", format.KopiaBlobCfgBlobID, err)
	}
	return true, nil
}
