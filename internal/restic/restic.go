// Package restic provides what Ferry needs of the restic program to restore the backups Velero's
// restic uploader made: where Velero keeps a namespace's restic repository, and the restic CLI
// run as a child process that lists a snapshot and streams it as a tar archive. restic never
// writes into a volume: the archive is written by Ferry (uploader.RestoreArchive).
package restic

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/ferry-backup/ferry/internal/repository"
)

// Errors restic reports, told apart by its messages.
var (
	ErrWrongPassword = errors.New("wrong password for the restic repository (Secret velero-repo-credentials, key repository-password)")
	ErrNoRepository  = errors.New("no restic repository at this location")
	ErrNoSnapshot    = errors.New("no such snapshot in the restic repository")
	ErrNoBinary      = errors.New("the restic program was not found")
)

// Repository is one restic repository and what opens it.
type Repository struct {
	// URL is restic's repository string, as Velero writes it into spec.repoIdentifier, e.g.
	// s3:http://minio:9000/bucket/prefix/restic/app, or a directory.
	URL string
	// Password opens the repository.
	Password string
	// Credentials sign S3 requests; without them the node-agent's own AWS environment applies.
	Credentials repository.Credentials
	// Region is the S3 region (AWS_DEFAULT_REGION), when known.
	Region string
	// CACert verifies the S3 endpoint's certificate; InsecureTLS skips the verification.
	CACert      []byte
	InsecureTLS bool
	// PathStyle addresses the bucket in the path (config.s3ForcePathStyle).
	PathStyle bool
	// NoLock reads without taking restic's lock (a ReadOnly location may not write one).
	NoLock bool
}

// String names the repository for messages; it holds no secret.
func (r Repository) String() string { return r.URL }

// URLFor returns the URL of the restic repository Velero keeps for the volumes of namespace at
// loc (Velero's GetRepoIdentifier): config.resticRepoPrefix if set, else for S3
// s3:<s3Url or s3-<region>.amazonaws.com>/<bucket>/<prefix>/restic, then /<namespace>. A
// filesystem location (Ferry's own provider) keeps it at <path>/<bucket>/<prefix>/restic/<namespace>.
func URLFor(loc repository.Location, namespace string) (string, error) {
	if namespace == "" || strings.ContainsAny(namespace, "/\\") || namespace == "." || namespace == ".." {
		return "", fmt.Errorf("invalid volume namespace %q", namespace)
	}
	resticDir := path.Join(strings.Trim(loc.Prefix, "/"), "restic")
	if prefix := loc.Config["resticRepoPrefix"]; prefix != "" {
		return strings.TrimSuffix(prefix, "/") + "/" + namespace, nil
	}
	switch loc.Provider {
	case repository.ProviderAWS:
		endpoint := strings.TrimSuffix(loc.Config["s3Url"], "/")
		if endpoint == "" {
			region := loc.Config["region"]
			if region == "" {
				return "", errors.New("the restic repository of an AWS location needs config.region or config.s3Url")
			}
			endpoint = "s3-" + region + ".amazonaws.com"
		}
		return "s3:" + endpoint + "/" + path.Join(loc.Bucket, resticDir, namespace), nil
	case repository.ProviderFilesystem:
		return filepath.Join(loc.Config["path"], loc.Bucket, filepath.FromSlash(resticDir), namespace), nil
	}
	return "", fmt.Errorf("%w %q for restic repositories", repository.ErrUnsupportedProvider, loc.Provider)
}

// CheckURL refuses a repository URL (a PodVolumeRestore's spec.repoIdentifier) that does not
// lead to the location's own storage: an S3 location's repositories are s3: URLs on the
// location's endpoint, a filesystem location's are directories below its config.path. restic
// would otherwise run whatever a URL names: ssh for sftp:, any program for rclone:, a local
// directory of the node.
func CheckURL(loc repository.Location, raw string) error {
	switch loc.Provider {
	case repository.ProviderAWS:
		rest, ok := strings.CutPrefix(raw, "s3:")
		if !ok {
			return fmt.Errorf("repoIdentifier %q is not an s3: repository, and the location is on S3", raw)
		}
		if endpoint := strings.TrimSuffix(loc.Config["s3Url"], "/"); endpoint != "" {
			if !strings.HasPrefix(rest, endpoint+"/"+loc.Bucket+"/") {
				return fmt.Errorf("repoIdentifier %q is not in the location's bucket %s at %s", raw, loc.Bucket, endpoint)
			}
			return nil
		}
		u, err := url.Parse("https://" + strings.TrimPrefix(strings.TrimPrefix(rest, "https://"), "http://"))
		if err != nil || !strings.HasSuffix(u.Hostname(), ".amazonaws.com") {
			return fmt.Errorf("repoIdentifier %q is not on AWS S3, and the location names no config.s3Url", raw)
		}
		if !strings.HasPrefix(u.Path, "/"+loc.Bucket+"/") {
			return fmt.Errorf("repoIdentifier %q is not in the location's bucket %s", raw, loc.Bucket)
		}
		return nil
	case repository.ProviderFilesystem:
		base := filepath.Join(loc.Config["path"], loc.Bucket)
		rel, err := filepath.Rel(base, raw)
		if err != nil || !filepath.IsAbs(raw) || !filepath.IsLocal(rel) {
			return fmt.Errorf("repoIdentifier %q is not below the location's directory %s", raw, base)
		}
		return nil
	}
	return fmt.Errorf("%w %q for restic repositories", repository.ErrUnsupportedProvider, loc.Provider)
}

// CheckSnapshotID refuses what is not a restic snapshot ID (hexadecimal, 8 to 64 digits):
// "latest", or a word restic would read as a flag.
func CheckSnapshotID(id string) error {
	if len(id) < 8 || len(id) > 64 {
		return fmt.Errorf("snapshot ID %q is not a restic snapshot ID (8 to 64 hexadecimal digits)", id)
	}
	for _, c := range id {
		if !strings.ContainsRune("0123456789abcdef", c) {
			return fmt.Errorf("snapshot ID %q is not a restic snapshot ID (8 to 64 hexadecimal digits)", id)
		}
	}
	return nil
}

// classify turns restic's failure into an error that names the cause.
func classify(repo Repository, snapshotID string, err error, stderr string) error {
	msg := lastLine(stderr)
	detail := ""
	if msg != "" {
		detail = ": restic said " + strconv.Quote(msg)
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		err = fmt.Errorf("restic exited with status %d", exit.ExitCode())
	}
	switch {
	case strings.Contains(stderr, "wrong password or no key found"):
		return fmt.Errorf("restic repository %s: %w", repo, ErrWrongPassword)
	case strings.Contains(stderr, "Is there a repository at the following location?"),
		strings.Contains(stderr, "repository does not exist"):
		return fmt.Errorf("restic repository %s: %w%s", repo, ErrNoRepository, detail)
	case strings.Contains(stderr, "no matching ID found"), strings.Contains(stderr, "no snapshot found"),
		strings.Contains(stderr, "invalid id"),
		// restic 0.17 and later load a full ID's file directly
		strings.Contains(stderr, "failed to load snapshot") &&
			(strings.Contains(stderr, "does not exist") || strings.Contains(stderr, "no such file")):
		return fmt.Errorf("restic repository %s: snapshot %s: %w", repo, snapshotID, ErrNoSnapshot)
	}
	return fmt.Errorf("restic repository %s: %w%s", repo, err, detail)
}

// lastLine is the last non-empty line of restic's error output, shortened; of a JSON line
// (restic 0.17 and later with --json), its message.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	line := strings.TrimSpace(lines[len(lines)-1])
	var msg struct {
		Message string `json:"message"`
	}
	if json.Unmarshal([]byte(line), &msg) == nil && msg.Message != "" {
		line = msg.Message
	}
	if len(line) > 300 {
		line = line[:300] + "…"
	}
	return line
}

// Resolve returns the URL of the repository a restore reads: repoIdentifier (a PodVolumeRestore's
// spec.repoIdentifier, which Velero fills) when it is the one Velero derives for namespace at
// loc, lies below the location's config.resticRepoPrefix, or passes CheckURL; the derived one
// when repoIdentifier is empty.
func Resolve(loc repository.Location, namespace, repoIdentifier string) (string, error) {
	derived, err := URLFor(loc, namespace)
	switch {
	case repoIdentifier == "":
		return derived, err
	case err == nil && repoIdentifier == derived:
		return derived, nil
	}
	if prefix := strings.TrimSuffix(loc.Config["resticRepoPrefix"], "/"); prefix != "" && strings.HasPrefix(repoIdentifier, prefix+"/") {
		return repoIdentifier, nil
	}
	if err := CheckURL(loc, repoIdentifier); err != nil {
		return "", err
	}
	return repoIdentifier, nil
}
