package repository_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kopia/kopia/repo"
	"github.com/kopia/kopia/repo/format"
	"github.com/kopia/kopia/repo/object"

	"github.com/ferry-backup/ferry/internal/repository"
	"github.com/ferry-backup/ferry/internal/repository/repotest"
)

// testClock is real time moved forward by the test: Kopia re-reads its format blobs when 15
// minutes have passed on the repository's clock.
type testClock struct{ offset atomic.Int64 }

func (c *testClock) now() time.Time                { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *testClock) advance(d time.Duration)       { c.offset.Add(int64(d)) }
func (c *testClock) options(o *repository.Options) { o.Now = c.now }

// An open repository outlives a password change made by another process. Kopia re-reads the
// format blobs every 15 minutes and decrypts them with the key of the password it opened with;
// the handles here are in the middle of a write session, start a new one, and read, after
// another process changed the password and the 15 minutes passed; so does the handle that
// changed it. A handle opened with the new password in the same work directory works next to
// them, even when Kopia adopts the format copies the handles keep in their cache directories.
// Afterwards only the new password opens the repository, and it finds everything written
// across the change.
func TestOpenRepositoryOutlivesAPasswordChange(t *testing.T) {
	for _, b := range repotest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := t.Context()
			loc, clock, workDir := b.New(t), &testClock{}, t.TempDir()
			inWorkDir := func(o *repository.Options) { o.WorkDir = workDir }
			noCache := func(o *repository.Options) { o.NoCache = true }
			backup, err := open(t, loc, "old-password", clock.options, inWorkDir)
			if err != nil {
				t.Fatal(err)
			}
			restore, err := open(t, loc, "old-password", clock.options, inWorkDir, noCache)
			if err != nil {
				t.Fatal(err)
			}
			data := make([]byte, 24<<20)
			_, _ = rand.NewChaCha8([32]byte{1}).Read(data)

			var oid object.ID
			var other *repository.Repository // another process
			err = repo.WriteSession(ctx, backup, repo.WriteSessionOptions{Purpose: "across a rotation"}, func(ctx context.Context, w repo.RepositoryWriter) error {
				ow := w.NewObjectWriter(ctx, object.WriterOptions{})
				defer ow.Close()
				if _, err := ow.Write(data[:len(data)/2]); err != nil {
					return err
				}
				if other, err = open(t, loc, "old-password", clock.options); err != nil {
					return err
				}
				if err := other.ChangePassword(ctx, "new-password"); err != nil {
					return err
				}
				clock.advance(16 * time.Minute)
				if _, err := ow.Write(data[len(data)/2:]); err != nil {
					return err
				}
				oid, err = ow.Result()
				return err
			})
			if err != nil {
				t.Fatalf("a write session across the password change: %v", err)
			}
			if err := backup.SaveRecord(ctx, "backup", "after", map[string]string{"by": "old handle"}); err != nil {
				t.Fatalf("a write session after the password change: %v", err)
			}
			if err := restore.Refresh(ctx); err != nil {
				t.Fatalf("refresh after the password change: %v", err)
			}
			requireObject(t, restore, oid, data)

			// A handle with the new password, in the same work directory; Kopia adopts a format
			// copy written to a cache directory in the last 15 minutes (the copies are stamped
			// with the test clock's time, which the real writes could not have).
			newer, err := open(t, loc, "new-password", clock.options, inWorkDir)
			if err != nil {
				t.Fatal(err)
			}
			clock.advance(16 * time.Minute)
			stampFormatCopies(t, workDir, clock.now().Add(-time.Minute))
			for name, r := range map[string]*repository.Repository{"old": backup, "new": newer, "changer": other} {
				if err := r.SaveRecord(ctx, "backup", name, map[string]string{"by": name}); err != nil {
					t.Errorf("write through the %s handle: %v", name, err)
				}
			}

			after, err := open(t, loc, "new-password")
			if err != nil {
				t.Fatalf("the new password after the change: %v", err)
			}
			requireObject(t, after, oid, data)
			for _, name := range []string{"after", "old", "new", "changer"} {
				var got map[string]string
				if err := after.LoadRecord(ctx, "backup", name, &got); err != nil {
					t.Errorf("record %s written across the change: %v", name, err)
				}
			}
			if _, err := open(t, loc, "old-password"); !errors.Is(err, repository.ErrWrongPassword) {
				t.Errorf("the old password after the change: %v, want ErrWrongPassword", err)
			}
		})
	}
}

func requireObject(t *testing.T, r *repository.Repository, oid object.ID, want []byte) {
	t.Helper()
	rd, err := r.OpenObject(t.Context(), oid)
	if err != nil {
		t.Fatalf("open object: %v", err)
	}
	defer rd.Close()
	got, err := io.ReadAll(rd)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("object read back: %d bytes, equal %t, %v", len(got), bytes.Equal(got, want), err)
	}
}

// stampFormatCopies sets the time of every copy of the format blobs Kopia keeps below dir.
func stampFormatCopies(t *testing.T, dir string, at time.Time) {
	t.Helper()
	stamped := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if n := d.Name(); n == string(format.KopiaRepositoryBlobID) || n == string(format.KopiaBlobCfgBlobID) {
			stamped++
			return os.Chtimes(p, at, at)
		}
		return nil
	})
	if err != nil || stamped == 0 {
		t.Fatalf("stamp format copies: %d stamped, %v", stamped, err)
	}
}
