// Package repoaccess provides the repositories of BackupStorageLocations to the controllers of a
// process: it reads the location, its storage credentials and the repository password Secret,
// chooses the repository of a volume namespace by the location's layout (layout.go), and keeps
// one open repository per location, namespace repository and password, shared by all
// operations; opens of different repositories never wait for each other.
package repoaccess

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/repository"
)

// The repository password Secret, as named by the seed, and the server's record of the password
// the repositories are keyed with. The two differ only while ferry-server re-keys repositories
// after a user changed the first; meanwhile the second still opens them.
const (
	PasswordSecret        = "velero-repo-credentials"
	PasswordKey           = "repository-password"
	AppliedPasswordSecret = "ferry-applied-repo-credentials"
)

// LocationPasswordKey is the key of AppliedPasswordSecret that records the password of one
// location whose repository kept an older password: a ReadOnly location is never re-keyed.
func LocationPasswordKey(location string) string { return "location." + location }

// AgentIdentity is the client identity of the node-agents and mover pods in snapshots: the same
// everywhere, so a volume backed up on another node or by the other path (a pod volume, or a
// claim through the data mover) still finds its previous snapshot: sources are told apart by
// their path alone, /<namespace>/pvc/<claim> or /<namespace>/pod/<pod>/<volume>.
var AgentIdentity = repository.Identity{Hostname: "ferry", Username: "node-agent"}

// Purpose says what an opened repository is for: restores open it without local caches.
type Purpose int

// Purposes.
const (
	ForBackup Purpose = iota
	ForRestore
	// ForReading opens an existing repository only, without local caches: a location without
	// a repository reports repository.ErrNotInitialized instead of getting one.
	ForReading
)

// Options configure an Access.
type Options struct {
	// Client reads BackupStorageLocations and Secrets in Namespace.
	Client    client.Reader
	Namespace string
	// WorkDir holds Kopia's connection files and caches.
	WorkDir string
	// Identity is the client identity written into snapshots.
	Identity repository.Identity
	// LockCheckTimeout returns the current backupRepositoryLockCheckTimeout.
	LockCheckTimeout func() time.Duration
	// Create allows creating a repository that does not exist yet. Only one process of a
	// cluster may create repositories (the server); node-agents only open them.
	Create bool
	// Now is the clock the repositories run on (default time.Now).
	Now func() time.Time
	// CredentialsFile is an AWS shared credentials file for S3 locations that name no
	// spec.credential: $AWS_SHARED_CREDENTIALS_FILE, where `velero install` mounts the Secret
	// cloud-credentials, read as Velero's AWS plugin reads it (profile from the location's
	// config.profile, default "default"). Without it such a location uses Kopia's chain:
	// $AWS_ACCESS_KEY_ID and $AWS_SECRET_ACCESS_KEY, then the instance's IAM role.
	CredentialsFile string
}

// Access hands out open repositories. Opens of different locations run side by side (one
// locked or unreachable location holds up only its own callers); concurrent opens of the same
// connection share one open.
type Access struct {
	opts Options
	mu   sync.Mutex
	open map[string]*entry
	// opening holds the opens under way, by the key of the connection first tried.
	opening map[string]*flight
	closed  bool
}

// flight is an open under way; done closes when it has ended, with err its outcome.
type flight struct {
	done chan struct{}
	err  error
}

type entry struct {
	rep  *repository.Repository
	refs int
	// current is false once the password changed; the entry closes when unused.
	current bool
	base    string
}

// New returns an Access.
func New(opts Options) *Access {
	return &Access{opts: opts, open: map[string]*entry{}, opening: map[string]*flight{}}
}

// Open returns the repository of the named location, opening it on first use, and a release
// function to call when the operation is done with it.
//
// A handle kept open from an earlier operation is refreshed first: Kopia's indexes and manifests
// are loaded once per handle and refreshed on their own only rarely (and never by a manifest
// lookup), so without this an operation would not see snapshots and records written since by
// other processes, or by this process through its other handle (backups and restores use
// separate ones).
func (a *Access) Open(ctx context.Context, bslName string, purpose Purpose) (*repository.Repository, func(), error) {
	return a.openRefreshed(ctx, bslName, "", purpose)
}

// OpenFor returns the repository that holds the volumes of namespace at the named location: the
// namespace's own repository where the location has Velero's layout for it (layout.go), else
// the location's. The returned repository's Location().Namespace says which.
func (a *Access) OpenFor(ctx context.Context, bslName, namespace string, purpose Purpose) (*repository.Repository, func(), error) {
	return a.openRefreshed(ctx, bslName, namespace, purpose)
}

// OpenNamespace returns the namespace's own repository at the named location, in Velero's
// layout, whatever the location's layout says of the namespace now: for the snapshots a backup
// record places there.
func (a *Access) OpenNamespace(ctx context.Context, bslName, namespace string, purpose Purpose) (*repository.Repository, func(), error) {
	if namespace == "" {
		return nil, nil, fmt.Errorf("backup storage location %s: open a namespace repository: no namespace", bslName)
	}
	return a.openRefreshed(ctx, bslName, forceVelero+namespace, purpose)
}

// forceVelero prefixes a namespace that opens the namespace's own repository whatever the
// layout (no namespace name contains a slash).
const forceVelero = "/"

func (a *Access) openRefreshed(ctx context.Context, bslName, namespace string, purpose Purpose) (*repository.Repository, func(), error) {
	rep, release, reused, err := a.acquire(ctx, bslName, namespace, purpose)
	if err != nil || !reused {
		return rep, release, err
	}
	if err := rep.Refresh(ctx); err != nil {
		release()
		return nil, nil, fmt.Errorf("backup storage location %s: reload the repository's indexes: %w", bslName, err)
	}
	return rep, release, nil
}

// acquire returns the open repository of the location, or opens it; reused tells which. The
// lock is never held across an open: a caller that finds an open of the same connection under
// way waits for it (or for its own context) and then takes its outcome.
func (a *Access) acquire(ctx context.Context, bslName, namespace string, purpose Purpose) (rep *repository.Repository, release func(), reused bool, err error) {
	opts, err := a.options(ctx, bslName, namespace, purpose)
	if err != nil {
		return nil, nil, false, err
	}
	key := keyOf(opts)
	for {
		a.mu.Lock()
		if e, ok := a.open[key]; ok {
			e.refs++
			a.mu.Unlock()
			return e.rep, a.releaser(ctx, key, e), true, nil
		}
		f, ok := a.opening[key]
		if !ok {
			f = &flight{done: make(chan struct{})}
			a.opening[key] = f
			a.mu.Unlock()
			rep, release, reused, err = a.openNew(ctx, bslName, opts)
			a.mu.Lock()
			delete(a.opening, key)
			f.err = err
			close(f.done)
			a.mu.Unlock()
			return rep, release, reused, err
		}
		a.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, nil, false, fmt.Errorf("backup storage location %s: wait for the repository to open: %w", bslName, context.Cause(ctx))
		case <-f.done:
		}
		// Another caller's canceled open says nothing about this caller's: try again.
		if f.err != nil && !errors.Is(f.err, context.Canceled) && !errors.Is(f.err, context.DeadlineExceeded) {
			return nil, nil, false, f.err
		}
	}
}

// openNew opens the location's repository, trying every password that may be in force, and
// keeps it as the location's current connection (with one reference, released by release);
// reused says it found the connection of another password open already.
func (a *Access) openNew(ctx context.Context, bslName string, opts repository.Options) (rep *repository.Repository, release func(), reused bool, err error) {
	rep, err = repository.Open(ctx, opts)
	// Every password that may be in force: a password change may be pending (the repository
	// still has the applied password), or the location was never re-keyed (ReadOnly).
	for _, key := range []string{PasswordKey, LocationPasswordKey(bslName)} {
		if !errors.Is(err, repository.ErrWrongPassword) {
			break
		}
		other, aerr := a.secretKey(ctx, AppliedPasswordSecret, key)
		if aerr != nil || string(other) == opts.Password {
			continue
		}
		opts.Password = string(other)
		k := keyOf(opts)
		a.mu.Lock()
		if e, ok := a.open[k]; ok {
			e.refs++
			a.mu.Unlock()
			return e.rep, a.releaser(ctx, k, e), true, nil
		}
		a.mu.Unlock()
		rep, err = repository.Open(ctx, opts)
	}
	if err != nil {
		return nil, nil, false, fmt.Errorf("backup storage location %s: %w", bslName, err)
	}
	key, base := keyOf(opts), baseOf(opts)
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		_ = rep.Close(ctx) // nothing is pending on a repository just opened
		return nil, nil, false, fmt.Errorf("backup storage location %s: repositories closed while it opened", bslName)
	}
	if e, ok := a.open[key]; ok { // opened meanwhile under the other password's flight
		_ = rep.Close(ctx) // nothing is pending on a repository just opened
		e.refs++
		return e.rep, a.releaser(ctx, key, e), true, nil
	}
	for k, e := range a.open { // a new password or new credentials replace the older connections
		if e.base == base && e.current {
			e.current = false
			a.closeIfUnusedLocked(ctx, k, e)
		}
	}
	e := &entry{rep: rep, refs: 1, current: true, base: base}
	a.open[key] = e
	return rep, a.releaser(ctx, key, e), false, nil
}

func (a *Access) releaser(ctx context.Context, key string, e *entry) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			a.mu.Lock()
			defer a.mu.Unlock()
			e.refs--
			a.closeIfUnusedLocked(context.WithoutCancel(ctx), key, e)
		})
	}
}

func (a *Access) closeIfUnusedLocked(ctx context.Context, key string, e *entry) {
	if e.refs == 0 && !e.current {
		_ = e.rep.Close(ctx) // nothing is pending on an unused repository
		delete(a.open, key)
	}
}

// Close closes every repository.
func (a *Access) Close(ctx context.Context) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closed = true
	for k, e := range a.open {
		_ = e.rep.Close(ctx)
		delete(a.open, k)
	}
}

// options builds the repository options of a location from the cluster's objects; with a
// namespace, those of the repository that holds its volumes.
func (a *Access) options(ctx context.Context, bslName, namespace string, purpose Purpose) (repository.Options, error) {
	bsl := &velerov1.BackupStorageLocation{}
	if err := a.opts.Client.Get(ctx, client.ObjectKey{Namespace: a.opts.Namespace, Name: bslName}, bsl); err != nil {
		if apierrors.IsNotFound(err) {
			return repository.Options{}, fmt.Errorf("backup storage location %q not found in namespace %s", bslName, a.opts.Namespace)
		}
		return repository.Options{}, fmt.Errorf("read backup storage location %s: %w", bslName, err)
	}
	if purpose == ForBackup && bsl.Spec.AccessMode == velerov1.BackupStorageLocationAccessModeReadOnly {
		return repository.Options{}, fmt.Errorf("backup storage location %s is ReadOnly; backups cannot be written to it", bslName)
	}
	loc, err := a.LocationOf(ctx, bsl)
	if err != nil {
		return repository.Options{}, err
	}
	identity := a.opts.Identity
	if forced, ok := strings.CutPrefix(namespace, forceVelero); ok {
		loc, identity = loc.ForNamespace(forced), repository.VeleroIdentity
	} else if namespace != "" {
		velero, err := a.veleroLayout(ctx, bsl, namespace)
		if err != nil {
			return repository.Options{}, err
		}
		if velero {
			loc, identity = loc.ForNamespace(namespace), repository.VeleroIdentity
		}
	}
	password, err := a.secretKey(ctx, PasswordSecret, PasswordKey)
	if err != nil {
		return repository.Options{}, fmt.Errorf("repository password: %w", err)
	}
	opts := repository.Options{
		Location: loc, Password: string(password), WorkDir: a.opts.WorkDir, Identity: identity,
		ReadOnly: bsl.Spec.AccessMode == velerov1.BackupStorageLocationAccessModeReadOnly,
		NoCache:  purpose != ForBackup, MustExist: !a.opts.Create || purpose == ForReading,
		Now: a.opts.Now,
	}
	if a.opts.LockCheckTimeout != nil {
		opts.LockCheckTimeout = a.opts.LockCheckTimeout()
	}
	return opts, nil
}

// Rekey changes the password of the location's repositories from oldPassword to newPassword:
// the location's own and, in Velero's layout, each namespace's that a BackupRepository records.
// It reports done=false without error when the location holds no repository. A repository
// already keyed with newPassword counts as done.
func (a *Access) Rekey(ctx context.Context, bslName, oldPassword, newPassword string) (done bool, err error) {
	opts, err := a.options(ctx, bslName, "", ForRestore)
	if err != nil {
		return false, err
	}
	targets := []repository.Options{opts}
	namespaces, err := veleroNamespaces(ctx, a.opts.Client, a.opts.Namespace, bslName)
	if err != nil {
		return false, err
	}
	for _, ns := range namespaces {
		o, err := a.options(ctx, bslName, ns, ForRestore)
		if err != nil {
			return false, err
		}
		if o.Location.Namespace != "" {
			targets = append(targets, o)
		}
	}
	var errs []error
	for _, o := range targets {
		d, err := rekey(ctx, o, filepath.Join(a.opts.WorkDir, "rekey"), oldPassword, newPassword)
		if err != nil {
			errs = append(errs, fmt.Errorf("backup storage location %s: %w", bslName, err))
		}
		done = done || d
	}
	return done, errors.Join(errs...)
}

// rekey changes the password of one repository; see Rekey.
func rekey(ctx context.Context, opts repository.Options, workDir, oldPassword, newPassword string) (done bool, err error) {
	opts.Password, opts.MustExist, opts.ReadOnly, opts.NoCache = oldPassword, true, false, true
	opts.WorkDir = workDir
	rep, err := repository.Open(ctx, opts)
	if errors.Is(err, repository.ErrInterruptedRekey) {
		// An earlier change stopped between Kopia's two format blobs: back to the old password,
		// then the change is made anew below.
		if _, rerr := repository.RepairInterruptedRekey(ctx, opts, oldPassword, newPassword); rerr != nil {
			return false, rerr
		}
		rep, err = repository.Open(ctx, opts)
	}
	if errors.Is(err, repository.ErrNotInitialized) {
		return false, nil
	}
	if errors.Is(err, repository.ErrWrongPassword) {
		opts.Password = newPassword
		if rep, err = repository.Open(ctx, opts); err == nil {
			return true, rep.Close(ctx) // re-keyed already
		}
	}
	if err != nil {
		return false, err
	}
	defer rep.Close(ctx) //nolint:errcheck // the change is written by ChangePassword
	if err := rep.ChangePassword(ctx, newPassword); err != nil {
		return false, err
	}
	return true, nil
}

// LocationOf returns the storage location of bsl, with the credentials its Secret holds, or for
// an S3 location without one, those of Options.CredentialsFile (read each time: the kubelet
// updates a mounted Secret in place).
func (a *Access) LocationOf(ctx context.Context, bsl *velerov1.BackupStorageLocation) (repository.Location, error) {
	var creds []byte
	var err error
	switch sel := bsl.Spec.Credential; {
	case sel != nil:
		if creds, err = a.secretKey(ctx, sel.Name, sel.Key); err != nil {
			return repository.Location{}, fmt.Errorf("credentials of backup storage location %s: %w", bsl.Name, err)
		}
	case a.opts.CredentialsFile != "" && strings.TrimPrefix(bsl.Spec.Provider, "velero.io/") == repository.ProviderAWS:
		if creds, err = os.ReadFile(a.opts.CredentialsFile); err != nil {
			return repository.Location{}, fmt.Errorf("credentials of backup storage location %s (no spec.credential): "+
				"AWS_SHARED_CREDENTIALS_FILE: %w", bsl.Name, err)
		}
	}
	return repository.LocationFor(bsl, creds)
}

// secretKey returns one key of a Secret in the install namespace.
func (a *Access) secretKey(ctx context.Context, name, key string) ([]byte, error) {
	s := &corev1.Secret{}
	if err := a.opts.Client.Get(ctx, client.ObjectKey{Namespace: a.opts.Namespace, Name: name}, s); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("secret %s/%s not found", a.opts.Namespace, name)
		}
		if apierrors.IsForbidden(err) {
			return nil, fmt.Errorf("may not read secret %s/%s: the node-agent reads only the repository password and "+
				"the Secrets `ferry install --credential-secrets` names: %w", a.opts.Namespace, name, err)
		}
		return nil, fmt.Errorf("read secret %s/%s: %w", a.opts.Namespace, name, err)
	}
	v, ok := s.Data[key]
	if !ok || len(v) == 0 {
		return nil, errors.New("secret " + a.opts.Namespace + "/" + name + " has no key " + key)
	}
	return v, nil
}

// keyOf identifies a connection: its base, its fingerprint and the password (hashed; never kept
// in clear).
func keyOf(opts repository.Options) string {
	sum := sha256.Sum256([]byte(opts.Password))
	return baseOf(opts) + "|" + fingerprint(opts.Location) + "|" + hex.EncodeToString(sum[:8])
}

// baseOf identifies a location's connections: a newly opened one (new password, new
// credentials or settings) replaces the older ones of the same base.
func baseOf(opts repository.Options) string {
	return fmt.Sprintf("%s|nocache=%t|ro=%t", opts.Location, opts.NoCache, opts.ReadOnly)
}

// fingerprint hashes everything else that shapes how the location is reached — settings, CA
// bundle, credentials — so that rotated S3 keys or a changed setting open a new connection at
// once.
func fingerprint(loc repository.Location) string {
	h := sha256.New()
	keys := make([]string, 0, len(loc.Config))
	for k := range loc.Config {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(h, "%s=%s\x00", k, loc.Config[k])
	}
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00", loc.CACert, loc.Credentials.AccessKeyID, loc.Credentials.SecretAccessKey, loc.Credentials.SessionToken)
	return hex.EncodeToString(h.Sum(nil)[:8])
}
