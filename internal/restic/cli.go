package restic

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// CLI runs the restic program. The password and the CA bundle reach restic through pipes
// (--password-file and --cacert naming /dev/fd/N), never its arguments, its environment or a
// file; S3 keys through its environment (restic reads them nowhere else), which only the same
// user and root can read. restic runs without a local cache, and an interrupted restic gets
// SIGINT (it removes its lock) and, after StopGrace, SIGKILL.
type CLI struct {
	// Binary is the restic program; empty looks up "restic" in PATH, then next to this
	// program (Ferry's image ships it as /restic).
	Binary string
	// Environ is the environment restic starts from (the node-agent's), without RESTIC_*
	// variables and, where the repository has credentials, without AWS_* ones.
	Environ []string
	// StopGrace is how long an interrupted restic may take to exit (default 10 s).
	StopGrace time.Duration
}

// Path returns the restic program CLI runs.
func (c CLI) Path() (string, error) {
	if c.Binary != "" {
		p, err := exec.LookPath(c.Binary)
		if err != nil {
			return "", fmt.Errorf("%w: --restic-binary %s: %w", ErrNoBinary, c.Binary, err)
		}
		return p, nil
	}
	if p, err := exec.LookPath("restic"); err == nil {
		return p, nil
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "restic")
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w in PATH nor next to this program (set --restic-binary)", ErrNoBinary)
}

// Node is one entry of a snapshot, as restic lists it.
type Node struct {
	// Path is slash-separated and relative to the snapshot's root.
	Path string
	// Type is restic's: file, dir, symlink, dev, chardev, fifo, socket, irregular.
	Type    string
	Size    int64
	ModTime time.Time
}

// List lists the entries of a snapshot (restic ls --json). It fails with ErrNoSnapshot,
// ErrWrongPassword or ErrNoRepository where restic says so.
func (c CLI) List(ctx context.Context, repo Repository, snapshotID string) ([]Node, error) {
	var nodes []Node
	found := false
	err := c.run(ctx, repo, snapshotID, []string{"ls", "--json", "--", snapshotID}, func(out io.Reader) error {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			var line struct {
				StructType  string    `json:"struct_type"`
				MessageType string    `json:"message_type"`
				Type        string    `json:"type"`
				Path        string    `json:"path"`
				Size        int64     `json:"size"`
				MTime       time.Time `json:"mtime"`
			}
			if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
				return fmt.Errorf("read restic's listing: %w", err)
			}
			switch kind := line.StructType + line.MessageType; {
			case strings.HasPrefix(kind, "snapshot"):
				found = true
			case strings.HasPrefix(kind, "node"):
				nodes = append(nodes, Node{Path: strings.TrimPrefix(line.Path, "/"), Type: line.Type, Size: line.Size, ModTime: line.MTime})
			}
		}
		return sc.Err()
	})
	if err != nil {
		return nil, err
	}
	if !found { // restic 0.14 ignores an unknown ID and exits 0
		return nil, fmt.Errorf("restic repository %s: snapshot %s: %w", repo, snapshotID, ErrNoSnapshot)
	}
	return nodes, nil
}

// Dump streams the whole snapshot as a tar archive (restic dump --archive tar <id> /) to
// consume. When consume fails, restic is stopped and consume's error returned; when restic
// fails, its error is returned (consume then saw the stream end early, or not at all).
func (c CLI) Dump(ctx context.Context, repo Repository, snapshotID string, consume func(io.Reader) error) error {
	return c.run(ctx, repo, snapshotID, []string{"dump", "--archive", "tar", "--", snapshotID, "/"}, consume)
}

// run runs restic with args and gives its standard output to consume.
func (c CLI) run(ctx context.Context, repo Repository, snapshotID string, args []string, consume func(io.Reader) error) error {
	bin, err := c.Path()
	if err != nil {
		return err
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = c.StopGrace
	if cmd.WaitDelay <= 0 {
		cmd.WaitDelay = 10 * time.Second
	}
	cmd.Env = c.environ(repo)
	secrets, err := feed(cmd, []byte(repo.Password), repo.CACert)
	if err != nil {
		return err
	}
	defer secrets.close()
	flags := []string{"--no-cache", "--quiet", "--password-file=/dev/fd/3"}
	if len(repo.CACert) > 0 {
		flags = append(flags, "--cacert=/dev/fd/4")
	}
	if repo.InsecureTLS {
		flags = append(flags, "--insecure-tls")
	}
	if repo.PathStyle {
		flags = append(flags, "--option=s3.bucket-lookup=path")
	}
	if repo.NoLock {
		flags = append(flags, "--no-lock")
	}
	cmd.Args = append(append([]string{bin, args[0]}, flags...), args[1:]...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	stderr := &tailBuffer{max: 16 << 10}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start restic: %w", err)
	}
	secrets.started()
	cerr := consume(stdout)
	if cerr != nil {
		stop() // restic is interrupted; its error is only the echo of consume's
	} else {
		_, _ = io.Copy(io.Discard, stdout) // what restic writes after the archive's end
	}
	werr := cmd.Wait()
	switch {
	case cerr != nil:
		return cerr
	case werr != nil && ctx.Err() != nil:
		return fmt.Errorf("restic stopped: %w", context.Cause(ctx))
	case werr != nil:
		return classify(repo, snapshotID, werr, stderr.String())
	}
	return nil
}

// environ is the environment restic runs with: Environ without RESTIC_* (a stray
// RESTIC_REPOSITORY or RESTIC_PASSWORD_COMMAND would override the flags), the repository's
// URL, and its S3 settings.
func (c CLI) environ(repo Repository) []string {
	creds := repo.Credentials.AccessKeyID != ""
	env := []string{"RESTIC_REPOSITORY=" + repo.URL}
	for _, kv := range c.Environ {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "RESTIC_") || (creds && strings.HasPrefix(name, "AWS_")) {
			continue
		}
		env = append(env, kv)
	}
	if creds {
		env = append(env, "AWS_ACCESS_KEY_ID="+repo.Credentials.AccessKeyID, "AWS_SECRET_ACCESS_KEY="+repo.Credentials.SecretAccessKey)
		if repo.Credentials.SessionToken != "" {
			env = append(env, "AWS_SESSION_TOKEN="+repo.Credentials.SessionToken)
		}
	}
	if repo.Region != "" {
		env = append(env, "AWS_DEFAULT_REGION="+repo.Region)
	}
	return env
}

// pipes hands secrets to a child through pipes: its fd 3 reads the first, fd 4 the second.
type pipes struct {
	readers, writers []*os.File
}

// feed attaches one pipe per secret to cmd (as fd 3, 4, …) and writes each once the child has
// started (started), closing the write end: restic reads to the end.
func feed(cmd *exec.Cmd, secrets ...[]byte) (*pipes, error) {
	p := &pipes{}
	for _, s := range secrets {
		r, w, err := os.Pipe()
		if err != nil {
			p.close()
			return nil, err
		}
		p.readers, p.writers = append(p.readers, r), append(p.writers, w)
		cmd.ExtraFiles = append(cmd.ExtraFiles, r)
		go func(w *os.File, s []byte) { _, _ = w.Write(s); _ = w.Close() }(w, s)
	}
	return p, nil
}

// started closes this process's read ends, which the child now holds: a child that exits
// without reading then fails the writers instead of blocking them.
func (p *pipes) started() {
	for _, r := range p.readers {
		_ = r.Close()
	}
}

func (p *pipes) close() {
	for _, f := range append(p.readers, p.writers...) {
		_ = f.Close()
	}
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if extra := b.buf.Len() - b.max; extra > 0 {
		b.buf.Next(extra)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
