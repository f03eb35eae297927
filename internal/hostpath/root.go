package hostpath

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ErrEscapes is returned when a path below the pods directory passes through a symlink, which
// could lead out of the directory the node-agent may read or write.
var ErrEscapes = errors.New("path leaves the pods directory")

// Under joins root and the relative path rel from Resolve, and checks on the real file system
// that no component of the path below root is a symlink. The volume's own contents may hold
// symlinks; the uploader stores and restores those as symlinks without following them.
func Under(root, rel string) (string, error) {
	local := filepath.FromSlash(rel)
	if !filepath.IsLocal(local) {
		return "", fmt.Errorf("%w: %q", ErrEscapes, rel)
	}
	p := root
	for _, part := range strings.Split(local, string(filepath.Separator)) {
		p = filepath.Join(p, part)
		st, err := os.Lstat(p)
		if err != nil {
			return "", err
		}
		if st.Mode()&os.ModeSymlink != 0 {
			return "", fmt.Errorf("%w: %s is a symlink", ErrEscapes, p)
		}
	}
	return p, nil
}
