package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// password protects every benchmark repository.
const password = "bench-password"

// tool is one backup program under test. Each call runs one child process; initRepo is not
// timed.
type tool interface {
	initRepo(ctx context.Context) error
	backup(ctx context.Context) (measurement, error)
	// restore restores the latest snapshot into the empty directory target and returns the
	// directory that corresponds to the source root.
	restore(ctx context.Context, target string) (string, measurement, error)
}

// contender is a tool with its name and the directory that holds its repository (and all its
// other state, removed before every round).
type contender struct {
	name string
	dir  string
	repo string
	tool tool
	// restoreOnly contenders take part in restores only (tar: the physical write limit).
	restoreOnly bool
}

// kopiaCLI runs the kopia command with its defaults, except for automatic maintenance: Ferry
// never runs maintenance as part of a backup, so the CLI does not either. hash, when set, is
// the repository's content hash instead of the CLI's default.
type kopiaCLI struct {
	bin    string
	dir    string // holds the config file, cache, logs and repository
	source string
	hash   string
	latest string // ID of the last snapshot
}

func newKopia(name, bin, dir, source, hash string) contender {
	return contender{name: name, dir: dir, repo: filepath.Join(dir, "repo"),
		tool: &kopiaCLI{bin: bin, dir: dir, source: source, hash: hash}}
}

func (k *kopiaCLI) command(ctx context.Context, args ...string) *exec.Cmd {
	global := []string{
		"--config-file=" + filepath.Join(k.dir, "repository.config"),
		"--log-dir=" + filepath.Join(k.dir, "logs"),
		"--no-progress",
	}
	cmd := exec.CommandContext(ctx, k.bin, append(global, args...)...)
	cmd.Env = append(os.Environ(), "KOPIA_PASSWORD="+password, "KOPIA_CHECK_FOR_UPDATES=false")
	return cmd
}

func (k *kopiaCLI) initRepo(ctx context.Context) error {
	args := []string{"repository", "create", "filesystem",
		"--path=" + filepath.Join(k.dir, "repo"),
		"--cache-directory=" + filepath.Join(k.dir, "cache"),
		"--override-hostname=bench", "--override-username=kopia",
		"--no-persist-credentials"}
	if k.hash != "" {
		args = append(args, "--block-hash="+k.hash)
	}
	_, err := run(k.command(ctx, args...))
	return err
}

func (k *kopiaCLI) backup(ctx context.Context) (measurement, error) {
	m, err := run(k.command(ctx, "--no-auto-maintenance", "snapshot", "create", k.source, "--json"))
	if err != nil {
		return m, err
	}
	line, err := lastJSONLine(m.stdout)
	if err != nil {
		return m, fmt.Errorf("kopia snapshot create: %w", err)
	}
	var manifest struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(line, &manifest); err != nil || manifest.ID == "" {
		return m, fmt.Errorf("kopia snapshot create: no snapshot ID in %q (%v)", line, err)
	}
	k.latest = manifest.ID
	return m, nil
}

func (k *kopiaCLI) restore(ctx context.Context, target string) (string, measurement, error) {
	if k.latest == "" {
		return "", measurement{}, errors.New("kopia: no snapshot to restore")
	}
	m, err := run(k.command(ctx, "snapshot", "restore", k.latest, target))
	return target, m, err
}

// resticCLI runs restic with its defaults. Its cache lives next to its repository. noCompress
// backs up with --compression off.
type resticCLI struct {
	bin        string
	dir        string
	source     string
	noCompress bool
}

func newRestic(name, bin, dir, source string, noCompress bool) contender {
	return contender{name: name, dir: dir, repo: filepath.Join(dir, "repo"),
		tool: &resticCLI{bin: bin, dir: dir, source: source, noCompress: noCompress}}
}

func (r *resticCLI) command(ctx context.Context, args ...string) *exec.Cmd {
	global := []string{"--repo=" + filepath.Join(r.dir, "repo"), "--cache-dir=" + filepath.Join(r.dir, "cache")}
	cmd := exec.CommandContext(ctx, r.bin, append(args, global...)...)
	cmd.Env = append(os.Environ(), "RESTIC_PASSWORD="+password)
	return cmd
}

func (r *resticCLI) initRepo(ctx context.Context) error {
	_, err := run(r.command(ctx, "init"))
	return err
}

func (r *resticCLI) backup(ctx context.Context) (measurement, error) {
	args := []string{"backup", "--host=bench", "--json", r.source}
	if r.noCompress {
		args = append(args, "--compression=off")
	}
	m, err := run(r.command(ctx, args...))
	if err != nil {
		return m, err
	}
	line, err := lastJSONLine(m.stdout)
	if err != nil {
		return m, fmt.Errorf("restic backup: %w", err)
	}
	var summary struct {
		SnapshotID string `json:"snapshot_id"`
	}
	if err := json.Unmarshal(line, &summary); err != nil || summary.SnapshotID == "" {
		return m, fmt.Errorf("restic backup: no snapshot ID in %q (%v)", line, err)
	}
	return m, nil
}

// restore restores the latest snapshot; restic recreates the absolute source path below target.
func (r *resticCLI) restore(ctx context.Context, target string) (string, measurement, error) {
	m, err := run(r.command(ctx, "restore", "latest", "--host=bench", "--target="+target))
	return filepath.Join(target, r.source), m, err
}

// untar extracts a tar archive of the source made before the restores (untimed): the time it
// takes to write the same tree without any backup program, the physical limit for a restore.
type untar struct {
	dir    string
	source string
}

func newUntar(dir, source string) contender {
	return contender{name: "tar", dir: dir, repo: filepath.Join(dir, "archive.tar"), tool: &untar{dir: dir, source: source}, restoreOnly: true}
}

func (u *untar) initRepo(context.Context) error { return nil }

// backup writes the archive; the benchmark calls it untimed, right before the restores.
func (u *untar) backup(ctx context.Context) (measurement, error) {
	return run(exec.CommandContext(ctx, "tar", "-C", u.source, "-cf", filepath.Join(u.dir, "archive.tar"), "."))
}

func (u *untar) restore(ctx context.Context, target string) (string, measurement, error) {
	m, err := run(exec.CommandContext(ctx, "tar", "-C", target, "-xpf", filepath.Join(u.dir, "archive.tar")))
	return target, m, err
}

// findKopia returns the kopia binary: the one given, or the pinned build of hack/install-tool.sh.
func findKopia(ctx context.Context, given, moduleRoot string) (string, error) {
	if given != "" {
		return given, nil
	}
	cmd := exec.CommandContext(ctx, filepath.Join(moduleRoot, "hack", "install-tool.sh"), "kopia")
	cmd.Stderr = os.Stderr // the first build takes minutes and says so
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("install the kopia CLI with hack/install-tool.sh: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// findRestic returns the restic binary: the one given, the one on PATH, or the one
// hack/install-restic.sh installs.
func findRestic(ctx context.Context, given, moduleRoot string) (string, error) {
	if given != "" {
		return given, nil
	}
	if bin, err := exec.LookPath("restic"); err == nil {
		return bin, nil
	}
	cmd := exec.CommandContext(ctx, filepath.Join(moduleRoot, "hack", "install-restic.sh"))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("restic is not installed and hack/install-restic.sh could not install it "+
			"(install the restic package, or pass -restic PATH): %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// findModuleRoot returns the directory of Ferry's go.mod, searching upwards from the working
// directory, so that the hack/ scripts are found.
func findModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("working directory: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "hack", "install-tool.sh")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run the benchmark inside Ferry's source tree (hack/install-tool.sh not found)")
		}
		dir = parent
	}
}
