package harness

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Node is one simulated node: a ferry-node-agent process with its own pods directory.
type Node struct {
	Name string
	// Root is the node's pods directory (the kubelet's /var/lib/kubelet/pods, /host_pods in the agent).
	Root    string
	c       *Cluster
	cmd     *exec.Cmd
	exited  chan struct{}
	LogPath string
	// MetricsAddr is where the agent serves Prometheus metrics.
	MetricsAddr string
	// Flags are added to the agent's command line.
	Flags []string
}

// StartNode starts a node-agent for a new node, with flags added to its command line.
func (c *Cluster) StartNode(name string, flags ...string) *Node {
	c.t.Helper()
	n := &Node{Name: name, Root: filepath.Join(c.Dir, "nodes", name, "pods"), c: c,
		LogPath: filepath.Join(c.Dir, "nodes", name, "node-agent.log"), MetricsAddr: freeAddr(c.t), Flags: flags}
	if err := os.MkdirAll(n.Root, 0o755); err != nil {
		c.t.Fatal(err)
	}
	c.mu.Lock()
	c.nodes[name] = n
	c.mu.Unlock()
	n.Start()
	c.t.Cleanup(func() { n.Stop(syscall.SIGKILL) })
	return n
}

// Start starts (or restarts) the node's agent.
func (n *Node) Start() {
	n.c.t.Helper()
	logFile, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		n.c.t.Fatal(err)
	}
	args := []string{"--node-name", n.Name, "--host-pods-root", n.Root,
		"--work-dir", filepath.Join(n.c.Dir, "nodes", n.Name, "work"),
		"--kubeconfig", n.c.Env.Kubeconfig, "--namespace", n.c.Install,
		"--metrics-bind-address", n.MetricsAddr, "--health-probe-bind-address", "0", "--log-level", "info"}
	n.cmd = exec.Command(filepath.Join(n.c.binDir, "ferry-node-agent"), append(args, n.Flags...)...)
	n.cmd.Stdout, n.cmd.Stderr = logFile, logFile
	if err := n.cmd.Start(); err != nil {
		n.c.t.Fatalf("harness: start node-agent %s: %v", n.Name, err)
	}
	n.exited = make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}, f *os.File) {
		_ = cmd.Wait()
		_ = f.Close()
		close(exited)
	}(n.cmd, n.exited, logFile)
}

// Stop sends sig to the agent and waits for it to exit (SIGKILL after 30 s).
func (n *Node) Stop(sig syscall.Signal) {
	if n.cmd == nil || n.cmd.Process == nil {
		return
	}
	select {
	case <-n.exited:
		return
	default:
	}
	_ = n.cmd.Process.Signal(sig)
	select {
	case <-n.exited:
	case <-time.After(30 * time.Second):
		_ = n.cmd.Process.Kill()
		<-n.exited
	}
}

// Log returns the agent's log so far.
func (n *Node) Log() string {
	data, err := os.ReadFile(n.LogPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	return string(data)
}

// Metrics returns the agent's Prometheus metrics text.
func (n *Node) Metrics() (string, error) {
	resp, err := http.Get("http://" + n.MetricsAddr + "/metrics")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return string(data), err
}

// freeAddr returns a local address nothing listens on now.
func freeAddr(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
