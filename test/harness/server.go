package harness

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
)

// Server is the ferry-server process of a simulated cluster.
type Server struct {
	c       *Cluster
	cmd     *exec.Cmd
	exited  chan struct{}
	LogPath string
}

// StartServer starts ferry-server with extra flags.
func (c *Cluster) StartServer(flags ...string) *Server {
	c.t.Helper()
	c.startJobRunner()
	s := &Server{c: c, LogPath: filepath.Join(c.Dir, "ferry-server.log")}
	logFile, err := os.Create(s.LogPath)
	if err != nil {
		c.t.Fatal(err)
	}
	args := append([]string{"--kubeconfig", c.Env.Kubeconfig, "--namespace", c.Install, "--work-dir", filepath.Join(c.Dir, "server-process"),
		"--leader-elect=false", "--metrics-bind-address", "0", "--health-probe-bind-address", "0"}, flags...)
	s.cmd = exec.Command(filepath.Join(c.binDir, "ferry-server"), args...)
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	if err := s.cmd.Start(); err != nil {
		c.t.Fatalf("harness: start ferry-server: %v", err)
	}
	s.exited = make(chan struct{})
	go func() {
		_ = s.cmd.Wait()
		_ = logFile.Close()
		close(s.exited)
	}()
	c.t.Cleanup(func() {
		_ = s.cmd.Process.Signal(syscall.SIGKILL)
		<-s.exited
	})
	return s
}

// Log returns the server's log so far.
func (s *Server) Log() string {
	data, _ := os.ReadFile(s.LogPath)
	return string(data)
}

// Stop kills the server and waits for it to exit, as a crash or a rescheduled pod would; start
// another with StartServer.
func (s *Server) Stop() {
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.exited
}
