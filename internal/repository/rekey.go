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
// opens kopia.repository. The blob holds the storage's retention settings, which Ferry never
// sets, so it is written empty, as Ferry creates it. It checks first that the repository is in
// the interrupted state, and reports whether it repaired anything.
func RepairInterruptedRekey(ctx context.Context, opts Options, oldPassword string) (bool, error) {
	probe := opts
	probe.Password, probe.MustExist, probe.NoCache, probe.ReadOnly = oldPassword, true, true, false
	rep, err := Open(ctx, probe)
	if err == nil {
		return false, rep.Close(ctx)
	}
	if !errors.Is(err, ErrInterruptedRekey) {
		return false, nil // another problem (or another password): not this repair's business
	}
	if err := writeBlobCfg(ctx, opts.Location, oldPassword); err != nil {
		return false, err
	}
	return true, nil
}

// writeBlobCfg writes an empty kopia.blobcfg under password, as Kopia's ChangePassword writes it
// first.
func writeBlobCfg(ctx context.Context, loc Location, password string) error {
	st, err := loc.storage(ctx, false)
	if err != nil {
		return err
	}
	defer st.Close(ctx) //nolint:errcheck // written blobs are flushed by PutBlob
	var buf byteBuffer
	if err := st.GetBlob(ctx, format.KopiaRepositoryBlobID, 0, -1, &buf); err != nil {
		return fmt.Errorf("read %s of %s: %w", format.KopiaRepositoryBlobID, loc, err)
	}
	j, err := format.ParseKopiaRepositoryJSON(buf.Bytes())
	if err != nil {
		return fmt.Errorf("parse %s of %s: %w", format.KopiaRepositoryBlobID, loc, err)
	}
	key, err := j.DeriveFormatEncryptionKeyFromPassword(password)
	if err != nil {
		return err
	}
	if err := j.WriteBlobCfgBlob(ctx, st, format.BlobStorageConfiguration{}, key); err != nil {
		return fmt.Errorf("rewrite %s of %s: %w", format.KopiaBlobCfgBlobID, loc, err)
	}
	return nil
}
