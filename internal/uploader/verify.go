package uploader

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"path"
	"sync"

	"github.com/kopia/kopia/fs"
	"github.com/kopia/kopia/repo"
	"github.com/kopia/kopia/repo/content"
	"github.com/kopia/kopia/repo/manifest"
	"github.com/kopia/kopia/repo/object"
	"github.com/kopia/kopia/snapshot"
	"github.com/kopia/kopia/snapshot/snapshotfs"
)

// VerifyOptions tune one verification of a snapshot.
type VerifyOptions struct {
	// Percent is the share of files (0 to 100) whose contents are read back in full: fetched,
	// decrypted and checked against their hashes. The others are checked in the index only.
	Percent float64
	// Seed picks the sample; 0 picks a new one each time, so that periodic verifications with
	// a small Percent read different files each run.
	Seed uint64
	// Packs, when set, holds the IDs of the repository's pack blobs (repository.PackBlobs):
	// every content the snapshot needs must lie in one of them. One listing serves every
	// snapshot of a repository.
	Packs map[string]struct{}
	// MaxErrors is how many errors the result keeps (default 10); all are counted.
	MaxErrors int
	// Parallel is the number of files checked at once (default DefaultRestoreParallel()).
	Parallel int
}

// VerifyResult describes a finished verification.
type VerifyResult struct {
	SnapshotID string
	// Files counts the non-directory entries checked (regular files, symlinks); Dirs the
	// directory listings read.
	Files, Dirs int64
	// FilesRead and BytesRead are the sample read back in full.
	FilesRead, BytesRead int64
	// Contents counts the contents looked up in the index (and in Packs).
	Contents int64
	// ErrorCount counts every error found; Errors holds the first MaxErrors of them.
	ErrorCount int64
	Errors     []VerifyError
}

// VerifyError is one damaged entry of a snapshot.
type VerifyError struct {
	// Path is the entry's path inside the snapshot, "/" for its root.
	Path    string
	Message string
}

func (e VerifyError) Error() string { return e.Path + ": " + e.Message }

// DefaultVerifyMaxErrors is how many errors a verification keeps by default.
const DefaultVerifyMaxErrors = 10

// Verify checks that snapshot snapshotID can be read back: every directory listing is read,
// every content of every file must be in the index (and, with opts.Packs, in a pack that
// exists), and a sample of opts.Percent of the files is read in full, which decrypts each
// content and checks its hash. Damage is reported per entry in the result, naming the path and,
// where it can be told, the pack; the error is for a verification that could not run (no such
// snapshot, ctx ended). Memory stays bounded: the tree is walked depth-first and at most
// opts.MaxErrors errors are kept. Open rep without local caches (repository.Options.NoCache), so
// that what is read comes from the store.
func Verify(ctx context.Context, rep repo.Repository, snapshotID string, opts VerifyOptions) (VerifyResult, error) {
	res := VerifyResult{SnapshotID: snapshotID}
	man, err := snapshot.LoadSnapshot(ctx, rep, manifest.ID(snapshotID))
	if err != nil {
		return res, fmt.Errorf("load snapshot %s: %w", snapshotID, err)
	}
	root, err := snapshotfs.SnapshotRoot(rep, man)
	if err != nil {
		return res, fmt.Errorf("open snapshot %s: %w", snapshotID, err)
	}
	v := newVerifier(rep, opts)
	v.res = &res
	work := make(chan verifyItem, 4*v.parallel)
	var wg sync.WaitGroup
	for range v.parallel {
		wg.Go(func() {
			for it := range work {
				if ctx.Err() == nil {
					v.file(ctx, it)
				}
			}
		})
	}
	v.entry(ctx, root, "/", work)
	close(work)
	wg.Wait()
	if ctx.Err() != nil {
		return res, fmt.Errorf("verify snapshot %s: %w: %w", snapshotID, ErrCanceled, context.Cause(ctx))
	}
	return res, nil
}

type verifyItem struct {
	oid  object.ID
	path string
	read bool
}

type verifier struct {
	rep      repo.Repository
	opts     VerifyOptions
	parallel int
	sample   *rand.Rand // used by the walking goroutine only

	mu  sync.Mutex
	res *VerifyResult
}

func newVerifier(rep repo.Repository, opts VerifyOptions) *verifier {
	if opts.MaxErrors <= 0 {
		opts.MaxErrors = DefaultVerifyMaxErrors
	}
	parallel := min(opts.Parallel, MaxParallel)
	if parallel <= 0 {
		parallel = DefaultRestoreParallel()
	}
	seed := opts.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	return &verifier{rep: rep, opts: opts, parallel: parallel, sample: rand.New(rand.NewPCG(seed, seed>>1))}
}

// entry checks one entry of the tree: a directory's listing is read and its children walked,
// anything else goes to the workers.
func (v *verifier) entry(ctx context.Context, e fs.Entry, p string, work chan<- verifyItem) {
	if ctx.Err() != nil {
		return
	}
	h, ok := e.(object.HasObjectID)
	if !ok {
		v.fail(p, errors.New("the entry has no object"))
		return
	}
	dir, isDir := e.(fs.Directory)
	if !isDir {
		read := v.opts.Percent >= 100 || (v.opts.Percent > 0 && v.sample.Float64()*100 < v.opts.Percent)
		select {
		case work <- verifyItem{oid: h.ObjectID(), path: p, read: read}:
		case <-ctx.Done():
		}
		return
	}
	// A listing's own contents are checked like a file's; reading it (Iterate) decrypts them.
	v.add(func(r *VerifyResult) { r.Dirs++ })
	if err := v.contents(ctx, h.ObjectID()); err != nil {
		v.fail(p, fmt.Errorf("directory listing: %w", err))
		return
	}
	iter, err := dir.Iterate(ctx)
	if err != nil {
		v.fail(p, v.explain(ctx, h.ObjectID(), fmt.Errorf("read directory listing: %w", err)))
		return
	}
	defer iter.Close()
	for {
		child, err := iter.Next(ctx)
		if err != nil {
			v.fail(p, v.explain(ctx, h.ObjectID(), fmt.Errorf("read directory listing: %w", err)))
			return
		}
		if child == nil {
			return
		}
		v.entry(ctx, child, path.Join(p, child.Name()), work)
	}
}

// file checks a file's (or symlink's) contents in the index and the packs, and reads it in full
// when it is in the sample.
func (v *verifier) file(ctx context.Context, it verifyItem) {
	v.add(func(r *VerifyResult) { r.Files++ })
	if err := v.contents(ctx, it.oid); err != nil {
		v.fail(it.path, err)
		return
	}
	if !it.read {
		return
	}
	n, err := v.read(ctx, it.oid)
	if err != nil {
		if ctx.Err() == nil {
			v.fail(it.path, v.explain(ctx, it.oid, err))
		}
		return
	}
	v.add(func(r *VerifyResult) { r.FilesRead++; r.BytesRead += n })
}

// contents looks up every content of the object in the index and its pack in opts.Packs.
func (v *verifier) contents(ctx context.Context, oid object.ID) error {
	ids, err := v.rep.VerifyObject(ctx, oid)
	if err != nil {
		return fmt.Errorf("object %s is not complete in the index: %w", oid, err)
	}
	v.add(func(r *VerifyResult) { r.Contents += int64(len(ids)) })
	if v.opts.Packs == nil {
		return nil
	}
	for _, id := range ids {
		info, err := v.rep.ContentInfo(ctx, id)
		if err != nil {
			return fmt.Errorf("content %s: %w", id, err)
		}
		if _, ok := v.opts.Packs[string(info.PackBlobID)]; !ok {
			return fmt.Errorf("content %s is in pack %s, which is missing from the store", id, info.PackBlobID)
		}
	}
	return nil
}

func (v *verifier) read(ctx context.Context, oid object.ID) (int64, error) {
	r, err := v.rep.OpenObject(ctx, oid)
	if err != nil {
		return 0, fmt.Errorf("open object %s: %w", oid, err)
	}
	defer r.Close()
	n, err := io.Copy(io.Discard, r)
	if err != nil {
		return n, fmt.Errorf("read object %s: %w", oid, err)
	}
	return n, nil
}

// explain adds to a read error which content, in which pack, failed, by reading the object's
// contents one at a time. It does so only while the error will be kept, so a badly damaged
// repository costs no more than MaxErrors such searches.
func (v *verifier) explain(ctx context.Context, oid object.ID, err error) error {
	dr, ok := v.rep.(repo.DirectRepository)
	if !ok || !v.keeps() {
		return err
	}
	ids, verr := v.rep.VerifyObject(ctx, oid)
	if verr != nil {
		return err
	}
	for _, id := range ids {
		if _, gerr := dr.ContentReader().GetContent(ctx, id); gerr != nil {
			return fmt.Errorf("content %s%s: %w", id, packOf(ctx, v.rep, id), gerr)
		}
	}
	return err
}

func packOf(ctx context.Context, rep repo.Repository, id content.ID) string {
	info, err := rep.ContentInfo(ctx, id)
	if err != nil {
		return ""
	}
	return " in pack " + string(info.PackBlobID)
}

func (v *verifier) keeps() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.res.Errors) < v.opts.MaxErrors
}

func (v *verifier) fail(p string, err error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.res.ErrorCount++
	if len(v.res.Errors) < v.opts.MaxErrors {
		v.res.Errors = append(v.res.Errors, VerifyError{Path: p, Message: err.Error()})
	}
}

func (v *verifier) add(f func(*VerifyResult)) {
	v.mu.Lock()
	defer v.mu.Unlock()
	f(v.res)
}
