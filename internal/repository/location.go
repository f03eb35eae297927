package repository

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kopia/kopia/repo/blob"
	"github.com/kopia/kopia/repo/blob/filesystem"
	"github.com/kopia/kopia/repo/blob/s3"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
)

// Providers Ferry can store repositories on.
const (
	ProviderAWS        = velerov1.ProviderAWS
	ProviderFilesystem = velerov1.ProviderFilesystem
)

// ErrUnsupportedProvider is returned for a storage provider Ferry cannot use.
var ErrUnsupportedProvider = errors.New("unsupported storage provider")

// Location is where one repository lives.
type Location struct {
	// Provider is ProviderAWS (any S3-compatible store) or ProviderFilesystem.
	Provider string
	// Bucket is the S3 bucket, or for the filesystem a directory below Config["path"].
	Bucket string
	// Prefix is the path inside the bucket.
	Prefix string
	// Config holds the BackupStorageLocation's provider settings: region, s3Url,
	// insecureSkipTLSVerify, stallTimeout for S3; path for the filesystem.
	Config map[string]string
	// CACert is a PEM bundle that verifies the S3 endpoint's certificate.
	CACert []byte
	// Credentials sign S3 requests.
	Credentials Credentials
	// Namespace, when set, selects Velero's per-namespace layout: <prefix>/kopia/<namespace>/.
	Namespace string
}

// Credentials are S3 access keys. String never prints the secret parts.
type Credentials struct {
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
}

// String describes the credentials without their secrets.
func (c Credentials) String() string {
	if c.AccessKeyID == "" {
		return "no credentials"
	}
	return "access key " + c.AccessKeyID
}

// LocationFor builds the location of a BackupStorageLocation. credentials is the content of the
// key the location's spec.credential selects (an AWS credentials file), or nil.
func LocationFor(bsl *velerov1.BackupStorageLocation, credentials []byte) (Location, error) {
	if bsl.Spec.ObjectStorage == nil {
		return Location{}, fmt.Errorf("backup storage location %s: spec.objectStorage is required", bsl.Name)
	}
	loc := Location{
		Provider: strings.TrimPrefix(bsl.Spec.Provider, "velero.io/"),
		Bucket:   bsl.Spec.ObjectStorage.Bucket,
		Prefix:   bsl.Spec.ObjectStorage.Prefix,
		Config:   bsl.Spec.Config,
		CACert:   bsl.Spec.ObjectStorage.CACert,
	}
	if len(credentials) > 0 {
		creds, err := ParseCredentials(credentials, bsl.Spec.Config["profile"])
		if err != nil {
			return Location{}, fmt.Errorf("backup storage location %s: %w", bsl.Name, err)
		}
		loc.Credentials = creds
	}
	return loc, loc.Validate()
}

// ParseCredentials reads an AWS shared credentials file (the format Velero's cloud-credentials
// Secret holds) and returns the keys of profile ("default" when empty).
func ParseCredentials(data []byte, profile string) (Credentials, error) {
	if profile == "" {
		profile = "default"
	}
	var creds Credentials
	section := "default"
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";") {
			continue
		}
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = strings.TrimPrefix(strings.TrimSpace(strings.Trim(line, "[]")), "profile ")
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok || section != profile {
			continue
		}
		switch strings.ToLower(strings.TrimSpace(key)) {
		case "aws_access_key_id":
			creds.AccessKeyID = strings.TrimSpace(value)
		case "aws_secret_access_key":
			creds.SecretAccessKey = strings.TrimSpace(value)
		case "aws_session_token":
			creds.SessionToken = strings.TrimSpace(value)
		}
	}
	if creds.AccessKeyID == "" || creds.SecretAccessKey == "" {
		return Credentials{}, fmt.Errorf("credentials: profile %q has no aws_access_key_id and aws_secret_access_key", profile)
	}
	return creds, nil
}

// Validate reports a location Ferry cannot use, naming the setting.
func (l Location) Validate() error {
	switch l.Provider {
	case ProviderAWS:
		if l.Bucket == "" {
			return errors.New("objectStorage.bucket is required")
		}
		if raw := l.Config["s3Url"]; raw != "" {
			if _, _, err := parseEndpoint(raw); err != nil {
				return err
			}
		}
		if _, err := l.stallTimeout(); err != nil {
			return err
		}
	case ProviderFilesystem:
		root := l.Config["path"]
		if !filepath.IsAbs(root) {
			return fmt.Errorf("config.path %q must be an absolute directory", root)
		}
		for _, part := range []string{l.Bucket, l.Prefix, l.Namespace} {
			if part != "" && !filepath.IsLocal(part) {
				return fmt.Errorf("bucket, prefix and namespace must stay below config.path; %q does not", part)
			}
		}
	default:
		return fmt.Errorf("%w %q (use %q or %q)", ErrUnsupportedProvider, l.Provider, ProviderAWS, ProviderFilesystem)
	}
	return nil
}

// ForNamespace returns the location of the namespace's repository in Velero's layout.
func (l Location) ForNamespace(namespace string) Location {
	l.Namespace = namespace
	return l
}

// repoPrefix is the path of the repository inside the bucket, "" or ending in "/".
func (l Location) repoPrefix() string {
	p := strings.Trim(l.Prefix, "/")
	if l.Namespace != "" {
		p = path.Join(p, "kopia", l.Namespace)
	}
	if p == "" {
		return ""
	}
	return p + "/"
}

// String names the location for logs and messages (never with credentials).
func (l Location) String() string {
	switch l.Provider {
	case ProviderFilesystem:
		return "filesystem:" + l.dir()
	default:
		s := fmt.Sprintf("s3://%s/%s", l.Bucket, l.repoPrefix())
		if endpoint := l.Config["s3Url"]; endpoint != "" {
			s += " at " + endpoint
		}
		return s
	}
}

func (l Location) dir() string {
	return filepath.Join(l.Config["path"], l.Bucket, filepath.FromSlash(l.repoPrefix()))
}

// storage opens the blob storage of the location; create makes a missing directory.
func (l Location) storage(ctx context.Context, create bool) (blob.Storage, error) {
	return l.openStorage(ctx, create, nil)
}

// openStorage opens the blob storage of the location; when abort ends, so do the S3 requests in
// flight.
func (l Location) openStorage(ctx context.Context, create bool, abort context.Context) (blob.Storage, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	if l.Provider == ProviderFilesystem {
		st, err := filesystem.New(ctx, &filesystem.Options{Path: l.dir()}, create)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", l, err)
		}
		return st, nil
	}
	opts, err := l.s3Options()
	if err != nil {
		return nil, err
	}
	timeout, err := l.stallTimeout()
	if err != nil {
		return nil, err
	}
	guard := &stallGuard{timeout: timeout, name: l.String(), abort: abort}
	// s3.New reads the bucket's storage configuration blob: guard that read too.
	sctx, w := guard.watch(ctx)
	defer w.stop()
	st, err := s3.New(sctx, opts, create)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", l, guard.explain(sctx, "open the bucket", err))
	}
	guard.Storage = st
	return guard, nil
}

// stallTimeout is how long a request to S3 may make no progress (config.stallTimeout).
func (l Location) stallTimeout() (time.Duration, error) {
	raw := l.Config["stallTimeout"]
	if raw == "" {
		return DefaultStallTimeout, nil
	}
	d, err := time.ParseDuration(raw)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("config.stallTimeout %q is not a positive duration such as 2m", raw)
	}
	return d, nil
}

func (l Location) s3Options() (*s3.Options, error) {
	opts := &s3.Options{
		BucketName:      l.Bucket,
		Prefix:          l.repoPrefix(),
		Endpoint:        "s3.amazonaws.com",
		Region:          l.Config["region"],
		RootCA:          l.CACert,
		AccessKeyID:     l.Credentials.AccessKeyID,
		SecretAccessKey: l.Credentials.SecretAccessKey,
		SessionToken:    l.Credentials.SessionToken,
	}
	if raw := l.Config["s3Url"]; raw != "" {
		host, insecure, err := parseEndpoint(raw)
		if err != nil {
			return nil, err
		}
		opts.Endpoint, opts.DoNotUseTLS = host, insecure
	}
	if v := l.Config["insecureSkipTLSVerify"]; v != "" {
		skip, err := strconv.ParseBool(v)
		if err != nil {
			return nil, fmt.Errorf("config.insecureSkipTLSVerify %q is not a boolean", v)
		}
		opts.DoNotVerifyTLS = skip
	}
	return opts, nil
}

// parseEndpoint splits a Velero s3Url ("http://minio:9000") into host:port and whether it is
// plain HTTP.
func parseEndpoint(raw string) (string, bool, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return "", false, fmt.Errorf("config.s3Url %q must look like https://host[:port]", raw)
	}
	if u.Path != "" && u.Path != "/" {
		return "", false, fmt.Errorf("config.s3Url %q must not have a path; use objectStorage.prefix", raw)
	}
	return u.Host, u.Scheme == "http", nil
}
