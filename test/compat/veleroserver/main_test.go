// Package veleroserver is the compatibility story with Velero's own server and CLI: Velero
// v1.18's real binary (hack/install-velero.sh) runs as a local process against a real API
// server that serves Velero's own CRDs, as that binary prints them, and hands its pod volumes to
// Ferry's real node-agent on a simulated node.
package veleroserver

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"

	"github.com/ferry-backup/ferry/internal/repository/repotest"
	"github.com/ferry-backup/ferry/internal/testenv"
	"github.com/ferry-backup/ferry/test/harness"
)

// veleroDir holds velero (server and CLI) and plugins/ (the AWS object-store plugin).
var veleroDir string

func TestMain(m *testing.M) {
	var crds []*apiextensionsv1.CustomResourceDefinition
	var err error
	if veleroDir, err = installVelero(); err == nil {
		crds, err = veleroCRDs(filepath.Join(veleroDir, "velero"))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "veleroserver:", err)
		os.Exit(1)
	}
	testenv.RunWith(m, testenv.Options{CRDs: crds}, repotest.Stop, harness.Stop)
}

// installVelero builds Velero once per machine and returns its directory.
func installVelero() (string, error) {
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "..", "..", "hack", "install-velero.sh")
	cmd := exec.Command(script)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s: %w", script, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// veleroCRDs returns the CRDs `velero install` would create: Velero's own, every kind.
func veleroCRDs(velero string) ([]*apiextensionsv1.CustomResourceDefinition, error) {
	cmd := exec.Command(velero, "install", "--crds-only", "--dry-run", "-o", "yaml")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("velero install --crds-only --dry-run: %w\n%s", err, stderr.String())
	}
	var list struct {
		Items []apiextensionsv1.CustomResourceDefinition `json:"items"`
	}
	if err := yaml.Unmarshal(out, &list); err != nil {
		return nil, fmt.Errorf("velero's CRDs: %w", err)
	}
	var crds []*apiextensionsv1.CustomResourceDefinition
	for i := range list.Items {
		if list.Items[i].Kind == "CustomResourceDefinition" {
			crds = append(crds, &list.Items[i])
		}
	}
	if len(crds) == 0 {
		return nil, fmt.Errorf("velero install --crds-only --dry-run printed no CRD:\n%s", out)
	}
	return crds, nil
}
