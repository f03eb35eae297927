package testenv

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
)

// SnapshotModule is the Go module whose CRDs are the CSI snapshot API (the version in go.mod,
// whose Go types the scheme registers).
const SnapshotModule = "github.com/kubernetes-csi/external-snapshotter/client/v8"

// snapshotCRDs are the files of the three snapshot.storage.k8s.io CRDs in SnapshotModule (not
// the group snapshot ones).
var snapshotCRDs = []string{
	"snapshot.storage.k8s.io_volumesnapshotclasses.yaml",
	"snapshot.storage.k8s.io_volumesnapshotcontents.yaml",
	"snapshot.storage.k8s.io_volumesnapshots.yaml",
}

// snapshotCRDPaths finds the snapshot CRD files in the module cache.
func snapshotCRDPaths() ([]string, error) {
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", SnapshotModule)
	cmd.Dir = filepath.Join(thisDir(), "..", "..")
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("find module %s: %w", SnapshotModule, err)
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		return nil, fmt.Errorf("module %s is not in the module cache (go mod download %s)", SnapshotModule, SnapshotModule)
	}
	paths := make([]string, len(snapshotCRDs))
	for i, name := range snapshotCRDs {
		paths[i] = filepath.Join(dir, "config", "crd", name)
	}
	return paths, nil
}
