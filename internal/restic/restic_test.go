package restic_test

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ferry-backup/ferry/internal/repository"
	"github.com/ferry-backup/ferry/internal/repository/repotest"
	"github.com/ferry-backup/ferry/internal/restic"
	"github.com/ferry-backup/ferry/internal/restic/restictest"
)

func TestMain(m *testing.M) { repotest.Run(m) }

func TestURLFor(t *testing.T) {
	s3 := func(config map[string]string) repository.Location {
		return repository.Location{Provider: repository.ProviderAWS, Bucket: "bkt", Prefix: "/velero/", Config: config}
	}
	for _, tc := range []struct {
		name string
		loc  repository.Location
		want string
	}{
		{"s3Url", s3(map[string]string{"s3Url": "http://minio:9000/"}), "s3:http://minio:9000/bkt/velero/restic/app"},
		{"region", s3(map[string]string{"region": "eu-west-1"}), "s3:s3-eu-west-1.amazonaws.com/bkt/velero/restic/app"},
		{"resticRepoPrefix", s3(map[string]string{"resticRepoPrefix": "s3:http://other/b/r/"}), "s3:http://other/b/r/app"},
		{"no prefix", repository.Location{Provider: repository.ProviderAWS, Bucket: "bkt", Config: map[string]string{"s3Url": "http://m"}}, "s3:http://m/bkt/restic/app"},
		{"filesystem", repository.Location{Provider: repository.ProviderFilesystem, Bucket: "b", Prefix: "p", Config: map[string]string{"path": "/data"}}, "/data/b/p/restic/app"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := restic.URLFor(tc.loc, "app")
			if err != nil || got != tc.want {
				t.Errorf("URLFor = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	if _, err := restic.URLFor(s3(nil), "app"); err == nil || !strings.Contains(err.Error(), "config.region") {
		t.Errorf("an AWS location without region: %v", err)
	}
	if _, err := restic.URLFor(s3(map[string]string{"s3Url": "http://m"}), "../x"); err == nil {
		t.Error("a namespace with a slash was accepted")
	}
}

func TestCheckURL(t *testing.T) {
	minio := repository.Location{Provider: repository.ProviderAWS, Bucket: "bkt", Config: map[string]string{"s3Url": "http://minio:9000"}}
	aws := repository.Location{Provider: repository.ProviderAWS, Bucket: "bkt", Config: map[string]string{"region": "us-east-1"}}
	fsys := repository.Location{Provider: repository.ProviderFilesystem, Bucket: "b", Config: map[string]string{"path": "/data"}}
	for _, tc := range []struct {
		loc repository.Location
		url string
		ok  bool
	}{
		{minio, "s3:http://minio:9000/bkt/velero/restic/app", true},
		{minio, "s3:http://evil:9000/bkt/velero/restic/app", false},
		{minio, "s3:http://minio:9000/other/restic/app", false},
		{minio, "sftp:user@host:/srv/restic", false},
		{minio, "rclone:remote:path", false},
		{minio, "/var/lib/restic", false},
		{aws, "s3:s3-us-east-1.amazonaws.com/bkt/velero/restic/app", true},
		{aws, "s3:s3.example.com/bkt/velero/restic/app", false},
		{aws, "s3:s3-us-east-1.amazonaws.com/other/restic/app", false},
		{fsys, "/data/b/p/restic/app", true},
		{fsys, "/data/b/../c/restic/app", false},
		{fsys, "/etc", false},
		{fsys, "s3:http://minio/b", false},
	} {
		if err := restic.CheckURL(tc.loc, tc.url); (err == nil) != tc.ok {
			t.Errorf("CheckURL(%s, %q) = %v, want ok=%t", tc.loc.Provider, tc.url, err, tc.ok)
		}
	}
}

func TestCheckSnapshotID(t *testing.T) {
	for id, ok := range map[string]bool{
		"dd2d458d": true, strings.Repeat("ab", 32): true, "latest": false, "--password-command=sh": false,
		"DD2D458D": false, "dd2d45": false, strings.Repeat("a", 65): false,
	} {
		if err := restic.CheckSnapshotID(id); (err == nil) != ok {
			t.Errorf("CheckSnapshotID(%q) = %v, want ok=%t", id, err, ok)
		}
	}
}

// tree writes a small volume: files, a symlink, an empty directory, a FIFO.
func tree(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "a/b"), 0o755))
	must(os.Mkdir(filepath.Join(dir, "empty"), 0o700))
	must(os.WriteFile(filepath.Join(dir, "a/b/f"), []byte("hello"), 0o640))
	must(os.WriteFile(filepath.Join(dir, "big"), []byte(strings.Repeat("z", 1<<20)), 0o600))
	must(os.Symlink("a/b/f", filepath.Join(dir, "link")))
	must(os.Chtimes(filepath.Join(dir, "a/b/f"), time.Unix(0, 0), time.Date(2020, 1, 2, 3, 4, 5, 123456789, time.UTC)))
	return dir
}

// wrapped returns a restic binary that records its arguments and environment in dir, then runs
// the real one.
func wrapped(t *testing.T, real, dir string) string {
	t.Helper()
	script := filepath.Join(dir, "restic")
	body := "#!/bin/sh\nprintf '%s\\n' \"$@\" >>" + dir + "/args\nenv >>" + dir + "/env\nexec " + real + " \"$@\"\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return script
}

func TestListAndDump(t *testing.T) {
	for _, backend := range []string{"filesystem", "s3"} {
		t.Run(backend, func(t *testing.T) {
			var repo restic.Repository
			if backend == "s3" {
				loc := repotest.S3(t)
				url, err := restic.URLFor(loc, "app")
				if err != nil {
					t.Fatal(err)
				}
				repo = restic.Repository{URL: url, Credentials: loc.Credentials, Region: loc.Config["region"], PathStyle: true}
			} else {
				repo = restic.Repository{URL: filepath.Join(t.TempDir(), "restic", "app")}
			}
			const password = "s3cret-Pa55"
			r := restictest.New(t, repo.URL, password, repo.Credentials)
			id := r.Backup(tree(t), map[string]string{"backup": "b1", "volume": "data"})
			repo.Password = password

			record := t.TempDir()
			cli := restic.CLI{Binary: wrapped(t, repotest.Restic(t), record), Environ: append(os.Environ(), "RESTIC_PASSWORD=not-this")}
			ctx := context.Background()
			nodes, err := cli.List(ctx, repo, id)
			if err != nil {
				t.Fatal(err)
			}
			var listed []string
			for _, n := range nodes {
				listed = append(listed, n.Path+":"+n.Type)
				if n.Path == "a/b/f" && !n.ModTime.Equal(time.Date(2020, 1, 2, 3, 4, 5, 123456789, time.UTC)) {
					t.Errorf("a/b/f listed with mtime %v", n.ModTime)
				}
			}
			sort.Strings(listed)
			if want := "a/b/f:file a/b:dir a:dir big:file empty:dir link:symlink"; strings.Join(listed, " ") != want {
				t.Errorf("listed %v, want %s", listed, want)
			}
			var names []string
			err = cli.Dump(ctx, repo, id, func(r io.Reader) error {
				tr := tar.NewReader(r)
				for {
					h, err := tr.Next()
					if errors.Is(err, io.EOF) {
						return nil
					}
					if err != nil {
						return err
					}
					names = append(names, h.Name)
				}
			})
			if err != nil || len(names) != 6 {
				t.Errorf("dump: %v %v", names, err)
			}
			for _, f := range []string{"args", "env"} {
				b, err := os.ReadFile(filepath.Join(record, f))
				if err != nil {
					t.Fatal(err)
				}
				if strings.Contains(string(b), password) || strings.Contains(string(b), "not-this") {
					t.Errorf("the password, or a stray RESTIC_PASSWORD, reached restic's %s:\n%s", f, b)
				}
			}

			wrong := repo
			wrong.Password = "wrong"
			if _, err := cli.List(ctx, wrong, id); !errors.Is(err, restic.ErrWrongPassword) {
				t.Errorf("wrong password: %v", err)
			}
			missing := strings.Repeat("0", 64)
			if _, err := cli.List(ctx, repo, missing); !errors.Is(err, restic.ErrNoSnapshot) {
				t.Errorf("list a missing snapshot: %v", err)
			}
			if err := cli.Dump(ctx, repo, missing, func(r io.Reader) error { _, err := io.Copy(io.Discard, r); return err }); !errors.Is(err, restic.ErrNoSnapshot) {
				t.Errorf("dump a missing snapshot: %v", err)
			}
			elsewhere := repo
			elsewhere.URL += "-missing"
			if _, err := cli.List(ctx, elsewhere, id); !errors.Is(err, restic.ErrNoRepository) {
				t.Errorf("missing repository: %v", err)
			}

			// A consumer that gives up stops restic.
			stop := errors.New("enough")
			start := time.Now()
			if err := cli.Dump(ctx, repo, id, func(io.Reader) error { return stop }); !errors.Is(err, stop) {
				t.Errorf("dump with a failing consumer: %v", err)
			}
			if d := time.Since(start); d > 20*time.Second {
				t.Errorf("restic took %s to stop", d)
			}
		})
	}
}

func TestMissingBinary(t *testing.T) {
	_, err := restic.CLI{Binary: filepath.Join(t.TempDir(), "restic")}.List(context.Background(), restic.Repository{URL: "/x"}, "dd2d458d")
	if !errors.Is(err, restic.ErrNoBinary) {
		t.Errorf("err = %v", err)
	}
}

func TestResolve(t *testing.T) {
	loc := repository.Location{Provider: repository.ProviderAWS, Bucket: "bkt", Prefix: "velero",
		Config: map[string]string{"s3Url": "http://minio:9000", "resticRepoPrefix": ""}}
	withPrefix := loc
	withPrefix.Config = map[string]string{"s3Url": "http://minio:9000", "resticRepoPrefix": "s3:http://elsewhere/b/restic"}
	for _, tc := range []struct {
		loc              repository.Location
		identifier, want string
		wantErr          bool
	}{
		{loc, "", "s3:http://minio:9000/bkt/velero/restic/app", false},
		{loc, "s3:http://minio:9000/bkt/velero/restic/app", "s3:http://minio:9000/bkt/velero/restic/app", false},
		{loc, "s3:http://minio:9000/bkt/old/restic/app", "s3:http://minio:9000/bkt/old/restic/app", false},
		{loc, "s3:http://other:9000/bkt/velero/restic/app", "", true},
		{withPrefix, "", "s3:http://elsewhere/b/restic/app", false},
		{withPrefix, "s3:http://elsewhere/b/restic/other", "s3:http://elsewhere/b/restic/other", false},
		{withPrefix, "rclone:x", "", true},
	} {
		got, err := restic.Resolve(tc.loc, "app", tc.identifier)
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("Resolve(%q) = %q, %v; want %q (error %t)", tc.identifier, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestListingCorrectsTheArchive(t *testing.T) {
	exact := time.Date(2020, 1, 2, 3, 4, 5, 6, time.UTC)
	l := restic.NewListing([]restic.Node{
		{Path: "d", Type: "dir", ModTime: exact}, {Path: "d/f", Type: "file", Size: 10, ModTime: exact},
		{Path: "g", Type: "file", Size: 5}, {Path: "p", Type: "fifo"}, {Path: "s", Type: "socket"},
		{Path: "c", Type: "chardev"}, {Path: "l", Type: "symlink", ModTime: exact},
	})
	if l.TotalBytes != 15 || l.TotalFiles != 2 {
		t.Errorf("totals %d bytes %d files", l.TotalBytes, l.TotalFiles)
	}
	for name, want := range map[string]string{"d/": "", "d/f": "", "./l": "", "p": "FIFO", "s": "socket", "c": "character device", "unlisted": ""} {
		h := &tar.Header{Name: name, ModTime: exact.Truncate(time.Second)}
		skip, err := l.Header(h)
		if err != nil || skip != want {
			t.Errorf("%s: skip %q, %v; want %q", name, skip, err, want)
		}
		if want == "" && name != "unlisted" && !h.ModTime.Equal(exact) {
			t.Errorf("%s: mtime %v, want %v", name, h.ModTime, exact)
		}
	}
}
