package repository

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/kopia/kopia/repo"
	"github.com/kopia/kopia/repo/blob"
	"github.com/kopia/kopia/repo/content"
	"github.com/kopia/kopia/repo/encryption"
	"github.com/kopia/kopia/repo/format"
	"github.com/kopia/kopia/repo/maintenance"
	"github.com/kopia/kopia/repo/splitter"
	"github.com/kopia/kopia/snapshot/policy"
)

// Hash algorithms a new repository can use. BLAKE3-256 is the default: on the machines Ferry was
// measured on it hashes as fast as HMAC-SHA256 with one core and faster with two, and much faster
// than Kopia's own default, BLAKE2B-256-128 (docs/performance.md).
const (
	HashBLAKE3     = "BLAKE3-256"
	HashHMACSHA256 = "HMAC-SHA256"
)

// Encryption is the encryption of every repository Ferry creates.
const Encryption = encryption.DefaultAlgorithm

// MaintenanceOwner is the maintenance owner recorded in every repository Ferry creates in its own
// layout (in Velero's: default@default, as Velero records it). Any Ferry process may run
// maintenance under it; Kopia clients with another identity need --force.
const MaintenanceOwner = "maintenance@ferry"

// Errors callers branch on.
var (
	// ErrWrongPassword means the password does not open the repository.
	ErrWrongPassword = errors.New("wrong repository password")
	// ErrNotInitialized means there is no repository at the location and Options.ReadOnly or
	// MustExist forbade creating one.
	ErrNotInitialized = errors.New("no repository at this location")
)

// Identity names the client in snapshot manifests. Kopia finds the previous snapshot of a source
// by it, so it must be stable for a volume, not the process's host name.
type Identity struct {
	Hostname string
	Username string
}

// Options open a repository.
type Options struct {
	// Location is where the repository lives.
	Location Location
	// Password opens (or creates) the repository; it comes from the velero-repo-credentials Secret.
	Password string
	// WorkDir holds Kopia's connection file and caches for this repository. Required.
	WorkDir string
	// Identity is the client identity (default ferry@ferry; in Velero's layout VeleroIdentity).
	Identity Identity
	// Hash is the hash of a new repository: HashBLAKE3 (default), HashHMACSHA256, or
	// HashKopiaDefault (the default in Velero's layout, where a repository is created with
	// Velero's formats and maintenance owner: velero.go).
	Hash string
	// ReadOnly forbids creating the repository and writing to it.
	ReadOnly bool
	// MustExist forbids creating the repository. Only one process may create a given
	// repository: Kopia's initialization is not safe against a second process initializing the
	// same location at the same moment (the two can leave mismatched format blobs). In Ferry the
	// server creates repositories and node-agents open them with MustExist.
	MustExist bool
	// ContentCacheMB and MetadataCacheMB bound the local caches (defaults 256 and 512 MiB).
	ContentCacheMB, MetadataCacheMB int64
	// NoCache turns the local caches off. Use it for restores: writing every restored chunk
	// into the content cache costs more than it saves (KOPIA-NOTES pitfall 3), and Kopia cannot
	// keep the metadata cache without the content cache.
	NoCache bool
	// ConnectTimeout bounds reaching the storage and opening the repository (default 1m).
	ConnectTimeout time.Duration
	// LockCheckTimeout is how long Open waits while another process holds the repository's
	// exclusive lock (maintenance or a password change) — backupRepositoryLockCheckTimeout.
	// Zero means do not wait.
	LockCheckTimeout time.Duration
	// Now is the clock Kopia runs on (default time.Now). Tests move it forward to reach Kopia's
	// timers, such as the format blob's 15-minute re-read.
	Now func() time.Time
}

func (o *Options) applyDefaults() error {
	if o.Password == "" {
		return errors.New("repository password is empty")
	}
	if !filepath.IsAbs(o.WorkDir) {
		return fmt.Errorf("work directory %q must be absolute", o.WorkDir)
	}
	identity, hash := Identity{Hostname: "ferry", Username: "ferry"}, HashBLAKE3
	if o.Location.veleroLayout() {
		identity, hash = VeleroIdentity, HashKopiaDefault
	}
	if o.Identity.Hostname == "" {
		o.Identity.Hostname = identity.Hostname
	}
	if o.Identity.Username == "" {
		o.Identity.Username = identity.Username
	}
	switch o.Hash {
	case "":
		o.Hash = hash
	case HashBLAKE3, HashHMACSHA256, HashKopiaDefault:
	default:
		return fmt.Errorf("hash %q is not one of %s, %s, %s", o.Hash, HashBLAKE3, HashHMACSHA256, HashKopiaDefault)
	}
	if o.ContentCacheMB <= 0 {
		o.ContentCacheMB = 256
	}
	if o.MetadataCacheMB <= 0 {
		o.MetadataCacheMB = 512
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = time.Minute
	}
	return o.Location.Validate()
}

// Repository is an open Kopia repository. Use it wherever Kopia wants a repo.Repository.
type Repository struct {
	repo.DirectRepository
	location Location
	lock     *exclusiveLock
	created  bool
	holder   string
	// password is the password the handle opens the format blobs with (formatpin.go).
	password *passwordBox
	// abort ends the storage requests still in flight (Close).
	abort context.CancelCauseFunc
	// releaseDir gives back the connection directory (connection.go).
	releaseDir func()
}

// Location returns where the repository lives.
func (r *Repository) Location() Location { return r.location }

// Created reports whether Open created the repository.
func (r *Repository) Created() bool { return r.created }

// Open connects to the repository at the location, creating it first when there is none.
// Several processes may open and write the same repository at once.
func Open(ctx context.Context, opts Options) (*Repository, error) {
	if err := opts.applyDefaults(); err != nil {
		return nil, err
	}
	// One deadline covers reaching the storage, waiting for the lock and connecting.
	cctx, cancel := context.WithTimeout(ctx, opts.ConnectTimeout+opts.LockCheckTimeout)
	defer cancel()
	st, err := opts.Location.storage(cctx, !opts.ReadOnly && !opts.MustExist)
	if errors.Is(err, os.ErrNotExist) && (opts.ReadOnly || opts.MustExist) {
		return nil, fmt.Errorf("%s: %w", opts.Location, ErrNotInitialized)
	}
	if err != nil {
		return nil, timeoutError(cctx, opts, err)
	}
	defer st.Close(ctx) //nolint:errcheck // used for reads; Connect keeps its own copy
	lock := &exclusiveLock{location: opts.Location}
	if err := lock.waitFree(cctx, st, opts.LockCheckTimeout); err != nil {
		return nil, timeoutError(cctx, opts, err)
	}
	password := &passwordBox{password: opts.Password}
	abortCtx, abort := context.WithCancelCause(context.WithoutCancel(ctx))
	id, done := register(&opening{location: opts.Location, password: password, abort: abortCtx})
	defer done()
	dir, releaseDir := connectionDir(opts), func() {}
	if !opts.NoCache {
		dir, releaseDir = takeCacheDir(dir, opts.Password)
	}
	r, created, err := connectAndOpen(ctx, cctx, connectionStorage{Storage: st, id: id}, dir, opts)
	if err != nil {
		abort(errClosed)
		releaseDir()
		return nil, err
	}
	dr, ok := r.(repo.DirectRepository)
	if !ok {
		_ = r.Close(ctx)
		abort(errClosed)
		releaseDir()
		return nil, fmt.Errorf("open repository at %s: not a direct repository", opts.Location)
	}
	return &Repository{DirectRepository: dr, location: opts.Location, lock: lock, created: created,
		holder: opts.Identity.Username + "@" + opts.Identity.Hostname, password: password,
		abort: abort, releaseDir: releaseDir}, nil
}

// connectAndOpen writes Kopia's connection file in dir (creating the repository first if
// allowed and needed), then opens the repository from it.
func connectAndOpen(ctx, cctx context.Context, st blob.Storage, dir string, opts Options) (repo.Repository, bool, error) {
	created, err := connect(cctx, st, dir, opts)
	if err != nil {
		return nil, false, timeoutError(cctx, opts, err)
	}
	r, err := repo.Open(ctx, configFile(dir), opts.Password, &repo.Options{TimeNowFunc: opts.Now})
	// The connection file names only this opening (connection.go) and is of no use afterwards:
	// the next open connects afresh (one read of the format blob).
	if rerr := os.Remove(configFile(dir)); rerr != nil && !errors.Is(rerr, os.ErrNotExist) && err == nil {
		_ = r.Close(ctx)
		return nil, false, fmt.Errorf("remove the connection file of %s: %w", opts.Location, rerr)
	}
	if err != nil {
		return nil, false, fmt.Errorf("open repository at %s: %w", opts.Location, passwordError(err))
	}
	return r, created, nil
}

// connect writes Kopia's connection file for the location in dir, creating the repository if
// needed.
func connect(ctx context.Context, st blob.Storage, dir string, opts Options) (bool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, fmt.Errorf("create work directory: %w", err)
	}
	connectOpts := &repo.ConnectOptions{
		ClientOptions: repo.ClientOptions{
			Hostname: opts.Identity.Hostname, Username: opts.Identity.Username,
			ReadOnly: opts.ReadOnly, Description: "ferry " + opts.Location.String(),
			// Read the format blob from storage on every open, so a changed password takes
			// effect at once instead of after Kopia's 15-minute format cache.
			FormatBlobCacheDuration: -1,
		},
	}
	if !opts.NoCache {
		connectOpts.CachingOptions = content.CachingOptions{
			CacheDirectory:        filepath.Join(dir, "cache"),
			ContentCacheSizeBytes: opts.ContentCacheMB << 20, MetadataCacheSizeBytes: opts.MetadataCacheMB << 20,
		}
	}
	err := writeConnection(ctx, configFile(dir), st, connectOpts)
	if !errors.Is(err, repo.ErrRepositoryNotInitialized) {
		if err != nil {
			return false, fmt.Errorf("connect to repository at %s: %w", opts.Location, passwordError(err))
		}
		return false, nil
	}
	if opts.ReadOnly || opts.MustExist {
		return false, fmt.Errorf("%s: %w", opts.Location, ErrNotInitialized)
	}
	created := true
	if err := initialize(ctx, st, opts); errors.Is(err, repo.ErrAlreadyInitialized) {
		created = false // another process created it first
	} else if err != nil {
		return false, err
	}
	if err := writeConnection(ctx, configFile(dir), st, connectOpts); err != nil {
		return false, fmt.Errorf("connect to new repository at %s: %w", opts.Location, err)
	}
	if !created {
		return false, nil
	}
	if err := setDefaults(ctx, dir, opts); err != nil {
		return true, err
	}
	if opts.Location.veleroLayout() {
		return true, writeVeleroMarker(ctx, st)
	}
	return true, nil
}

// writeConnection writes Kopia's connection file for st, as repo.Connect does, without its
// check that the repository opens with the password: Connect opens it once for that, and the
// caller opens it again, and each open derives the format key from the password with scrypt —
// most of the CPU of a small restore. The caller's open is the check. The repository must exist
// (repo.ErrRepositoryNotInitialized otherwise).
func writeConnection(ctx context.Context, file string, st blob.Storage, opts *repo.ConnectOptions) error {
	if _, err := st.GetMetadata(ctx, format.KopiaRepositoryBlobID); errors.Is(err, blob.ErrBlobNotFound) {
		return repo.ErrRepositoryNotInitialized
	} else if err != nil {
		return fmt.Errorf("read the format blob: %w", err)
	}
	ci := st.ConnectionInfo()
	lc := repo.LocalConfig{Storage: &ci, Caching: &content.CachingOptions{},
		ClientOptions: opts.ClientOptions.ApplyDefaults(ctx, "Repository in "+st.DisplayName())}
	if opts.CachingOptions.ContentCacheSizeBytes != 0 {
		lc.Caching = opts.CachingOptions.CloneOrDefault()
		// Kopia reads a relative cache directory as relative to the connection file's.
		abs, err := filepath.Abs(lc.Caching.CacheDirectory)
		if err != nil {
			return fmt.Errorf("cache directory: %w", err)
		}
		lc.Caching.CacheDirectory = abs
	}
	data, err := json.MarshalIndent(lc, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(file, data, 0o600); err != nil {
		return fmt.Errorf("write the connection file: %w", err)
	}
	return nil
}

// initialize creates a repository with Ferry's formats.
func initialize(ctx context.Context, st blob.Storage, opts Options) error {
	err := repo.Initialize(ctx, st, &repo.NewRepositoryOptions{
		BlockFormat: format.ContentFormat{
			Hash:       opts.Hash,
			Encryption: Encryption,
		},
		ObjectFormat: format.ObjectFormat{Splitter: splitter.DefaultAlgorithm},
	}, opts.Password)
	if err != nil && !errors.Is(err, repo.ErrAlreadyInitialized) {
		return fmt.Errorf("create repository at %s: %w", opts.Location, err)
	}
	return err
}

// ParallelUploadAboveSize is the file size above which one file is read and uploaded by several
// workers at once (Kopia's default is 2 GiB).
const ParallelUploadAboveSize = 64 << 20

// setDefaults writes the global snapshot policy (none in Velero's layout) and the maintenance
// owner of a new repository.
func setDefaults(ctx context.Context, dir string, opts Options) error {
	r, err := repo.Open(ctx, configFile(dir), opts.Password, &repo.Options{TimeNowFunc: opts.Now})
	if err != nil {
		return fmt.Errorf("open new repository at %s: %w", opts.Location, err)
	}
	defer r.Close(ctx) //nolint:errcheck // nothing was written through r itself
	return repo.WriteSession(ctx, r, repo.WriteSessionOptions{Purpose: "ferry: set defaults"}, func(ctx context.Context, w repo.RepositoryWriter) error {
		if global := globalPolicy(opts.Location); global != nil {
			if err := policy.SetPolicy(ctx, w, policy.GlobalPolicySourceInfo, global); err != nil {
				return fmt.Errorf("set global policy: %w", err)
			}
		}
		params := maintenance.DefaultParams()
		params.Owner = opts.Location.maintenanceOwner()
		if err := maintenance.SetParams(ctx, w, &params); err != nil {
			return fmt.Errorf("set maintenance owner: %w", err)
		}
		return nil
	})
}

func newOptionalInt64(v int64) *policy.OptionalInt64 {
	o := policy.OptionalInt64(v)
	return &o
}

// connectionDir is this location's directory below the work directory: one per location, so
// one process can hold several repositories (and one per password in use, connection.go).
func connectionDir(opts Options) string {
	key := opts.Location.String()
	if opts.NoCache {
		key += " (no cache)"
	}
	sum := sha256.Sum256([]byte(key))
	return filepath.Join(opts.WorkDir, hex.EncodeToString(sum[:8]))
}

func configFile(dir string) string {
	return filepath.Join(dir, "repository.config")
}

// passwordError turns Kopia's invalid-password error into ErrWrongPassword.
func passwordError(err error) error {
	if errors.Is(err, format.ErrInvalidPassword) {
		return ErrWrongPassword
	}
	if interruptedRekey(err) {
		return fmt.Errorf("%w (%v)", ErrInterruptedRekey, err)
	}
	return err
}

// timeoutError explains a connection that ran out of time.
func timeoutError(ctx context.Context, opts Options, err error) error {
	if ctx.Err() != nil && !errors.Is(err, ErrWrongPassword) && !errors.Is(err, ErrLocked) {
		return fmt.Errorf("%s not reachable within %s: %w", opts.Location, opts.ConnectTimeout+opts.LockCheckTimeout, err)
	}
	return err
}

// CloseTimeout bounds Close: Kopia waits there for writes it made in the background (its own
// logs), which ignore every context, and gives up on them only when their requests end.
const CloseTimeout = 30 * time.Second

// errClosed ends the storage requests of a closed handle.
var errClosed = errors.New("the repository handle was closed")

// Close releases the repository. The storage requests still in flight are ended when ctx ends
// or after CloseTimeout, so that a silent endpoint cannot hold it.
func (r *Repository) Close(ctx context.Context) error {
	defer r.releaseDir()
	defer r.abort(errClosed)
	stop := context.AfterFunc(ctx, func() { r.abort(fmt.Errorf("%w: %w", errClosed, context.Cause(ctx))) })
	defer stop()
	t := time.AfterFunc(CloseTimeout, func() {
		r.abort(fmt.Errorf("%w: its writes were not done within %s", errClosed, CloseTimeout))
	})
	defer t.Stop()
	return r.DirectRepository.Close(ctx)
}
