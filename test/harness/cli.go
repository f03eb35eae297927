package harness

import (
	"os/exec"
	"path/filepath"
)

// Ferry runs the built ferry CLI against the cluster, in the install namespace, and returns its
// combined output; the error is its exit.
func (c *Cluster) Ferry(args ...string) (string, error) {
	c.t.Helper()
	cmd := exec.Command(filepath.Join(c.binDir, "ferry"), append([]string{"--kubeconfig", c.Env.Kubeconfig, "-n", c.Install}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}
