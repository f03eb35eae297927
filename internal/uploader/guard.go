package uploader

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/kopia/kopia/fs"
	"github.com/kopia/kopia/snapshot/restore"
)

// ErrOutsideTarget is returned when a restore would write outside its target directory.
var ErrOutsideTarget = errors.New("entry would be written outside the restore target")

// guardedOutput is Kopia's filesystem output with a check before every write: the entry's path
// must stay below the target, and no existing symlink on the way may redirect the write. An
// existing symlink in the place of a restored entry is replaced when overwriting is allowed.
type guardedOutput struct {
	*restore.FilesystemOutput
}

func (o *guardedOutput) BeginDirectory(ctx context.Context, rel string, e fs.Directory) error {
	if err := o.check(rel, o.OverwriteFiles); err != nil {
		return err
	}
	return o.FilesystemOutput.BeginDirectory(ctx, rel, e)
}

func (o *guardedOutput) FinishDirectory(ctx context.Context, rel string, e fs.Directory) error {
	if err := o.check(rel, false); err != nil {
		return err
	}
	return o.FilesystemOutput.FinishDirectory(ctx, rel, e)
}

func (o *guardedOutput) WriteFile(ctx context.Context, rel string, e fs.File, cb restore.FileWriteProgress) error {
	if err := o.check(rel, o.OverwriteFiles); err != nil {
		return err
	}
	return o.FilesystemOutput.WriteFile(ctx, rel, e, cb)
}

func (o *guardedOutput) CreateSymlink(ctx context.Context, rel string, e fs.Symlink) error {
	if err := o.check(rel, o.OverwriteSymlinks); err != nil {
		return err
	}
	return o.FilesystemOutput.CreateSymlink(ctx, rel, e)
}

// check refuses a relative path that leaves the target or passes through an existing symlink.
// When replace is set, a symlink at the path itself is removed so the write cannot follow it;
// otherwise it is refused too.
func (o *guardedOutput) check(rel string, replace bool) error {
	if rel == "" || rel == "." {
		return nil
	}
	local := filepath.FromSlash(rel)
	if !filepath.IsLocal(local) {
		return fmt.Errorf("%w: %q", ErrOutsideTarget, rel)
	}
	parts := strings.Split(local, string(filepath.Separator))
	path := o.TargetPath
	for i, part := range parts {
		path = filepath.Join(path, part)
		st, err := os.Lstat(path)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if st.Mode()&os.ModeSymlink == 0 {
			continue
		}
		if i == len(parts)-1 && replace {
			return os.Remove(path)
		}
		return fmt.Errorf("%w: %s is an existing symlink on the way to %q", ErrOutsideTarget, path, rel)
	}
	return nil
}
