package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"

	"github.com/ferry-backup/ferry/internal/memlimit"
	"github.com/ferry-backup/ferry/internal/repository"
	"github.com/ferry-backup/ferry/internal/uploader"
)

// Ferry's child operations: the bench binary re-executes itself with -ferry-op, so that every
// operation is a process of its own whose peak RSS the parent can read.
const (
	opInit    = "init"
	opBackup  = "backup"
	opRestore = "restore"
)

// ferrySource is the source name Ferry's snapshots are filed under.
const ferrySource = "/bench/data"

// ferryOp is one operation run inside a child process.
type ferryOp struct {
	op       string
	repo     string // repository root directory (the filesystem location's path)
	workDir  string // Kopia's config file and caches
	source   string
	target   string
	snapshot string
	parallel int
	// cpuProfile, when set, receives a CPU profile of the whole operation (go tool pprof).
	cpuProfile string
	// memProfile, when set, receives a heap profile at the operation's end: its alloc_space
	// view says where the operation's memory was allocated (go tool pprof -sample_index=alloc_space).
	memProfile string
}

func (o ferryOp) validate() error {
	var missing []string
	require := func(name, value string) {
		if value == "" {
			missing = append(missing, "-"+name)
		}
	}
	require("repo", o.repo)
	require("workdir", o.workDir)
	switch o.op {
	case opInit:
	case opBackup:
		require("source", o.source)
	case opRestore:
		require("target", o.target)
		require("snapshot", o.snapshot)
	default:
		return fmt.Errorf("unknown -ferry-op %q (want init, backup or restore)", o.op)
	}
	if len(missing) > 0 {
		return fmt.Errorf("-ferry-op %s needs %s", o.op, strings.Join(missing, ", "))
	}
	return nil
}

// ferryOutput is the JSON line a child prints on standard output.
type ferryOutput struct {
	SnapshotID string          `json:"snapshotID,omitempty"`
	ParentID   string          `json:"parentID,omitempty"`
	Stats      json.RawMessage `json:"stats,omitempty"`
}

// runFerryOp runs o in this process and prints its outcome as one JSON line.
func runFerryOp(ctx context.Context, o ferryOp) (err error) {
	memlimit.Apply("/") // as Ferry's programs do: run in a memory cgroup, the op behaves as the agent would
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return fmt.Errorf("CPU profile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return fmt.Errorf("CPU profile: %w", err)
		}
		defer func() {
			pprof.StopCPUProfile()
			err = errors.Join(err, f.Close())
		}()
	}
	if o.memProfile != "" {
		defer func() {
			f, ferr := os.Create(o.memProfile)
			if ferr == nil {
				ferr = errors.Join(pprof.Lookup("allocs").WriteTo(f, 0), f.Close())
			}
			err = errors.Join(err, ferr)
		}()
	}
	rep, err := repository.Open(ctx, repository.Options{
		Location: repository.Location{
			Provider: repository.ProviderFilesystem,
			Bucket:   "bench",
			Config:   map[string]string{"path": o.repo},
		},
		Password: password,
		WorkDir:  o.workDir,
		Identity: repository.Identity{Hostname: "bench", Username: "ferry"},
		NoCache:  o.op == opRestore, // as the node-agent opens repositories for restores
	})
	if err != nil {
		return fmt.Errorf("open repository: %w", err)
	}
	defer func() {
		if cerr := rep.Close(ctx); cerr != nil {
			err = errors.Join(err, fmt.Errorf("close repository: %w", cerr))
		}
	}()
	var out ferryOutput
	var stats any
	switch o.op {
	case opInit:
	case opBackup:
		res, err := uploader.Backup(ctx, rep, o.source, uploader.BackupOptions{Parallel: o.parallel, Source: ferrySource})
		if err != nil {
			return fmt.Errorf("backup: %w", err)
		}
		out.SnapshotID, out.ParentID, stats = res.SnapshotID, res.ParentID, res.Stats
	case opRestore:
		st, err := uploader.Restore(ctx, rep, o.snapshot, o.target, uploader.RestoreOptions{Parallel: o.parallel})
		if err != nil {
			return fmt.Errorf("restore %s: %w", o.snapshot, err)
		}
		stats = st
	default:
		return fmt.Errorf("unknown -ferry-op %q (want init, backup or restore)", o.op)
	}
	if stats != nil {
		if out.Stats, err = json.Marshal(stats); err != nil {
			return fmt.Errorf("encode stats: %w", err)
		}
	}
	return json.NewEncoder(os.Stdout).Encode(out)
}

// ferryTool is the parent's side of Ferry: it runs each operation as a child process.
type ferryTool struct {
	self     string // this benchmark's executable
	dir      string
	source   string
	parallel int
	latest   string    // ID of the last snapshot
	notes    io.Writer // receives each child's JSON line
}

func newFerry(f *ferryTool) contender {
	return contender{name: "ferry", dir: f.dir, repo: filepath.Join(f.dir, "repo"), tool: f}
}

func (f *ferryTool) command(ctx context.Context, op string, args ...string) *exec.Cmd {
	all := []string{
		"-ferry-op=" + op,
		"-repo=" + filepath.Join(f.dir, "repo"),
		"-workdir=" + filepath.Join(f.dir, "state"),
		"-parallel=" + strconv.Itoa(f.parallel),
	}
	return exec.CommandContext(ctx, f.self, append(all, args...)...)
}

// runOp runs one child and decodes its JSON line.
func (f *ferryTool) runOp(op string, cmd *exec.Cmd) (ferryOutput, measurement, error) {
	var out ferryOutput
	m, err := run(cmd)
	if err != nil {
		return out, m, err
	}
	line, err := lastJSONLine(m.stdout)
	if err != nil {
		return out, m, fmt.Errorf("ferry: %w", err)
	}
	if err := json.Unmarshal(line, &out); err != nil {
		return out, m, fmt.Errorf("ferry: decode %q: %w", line, err)
	}
	if f.notes != nil {
		fmt.Fprintf(f.notes, "  ferry %s: %s\n", op, line)
	}
	return out, m, nil
}

func (f *ferryTool) initRepo(ctx context.Context) error {
	_, _, err := f.runOp(opInit, f.command(ctx, opInit))
	return err
}

func (f *ferryTool) backup(ctx context.Context) (measurement, error) {
	out, m, err := f.runOp(opBackup, f.command(ctx, opBackup, "-source="+f.source))
	if err != nil {
		return m, err
	}
	if out.SnapshotID == "" {
		return m, errors.New("ferry backup: no snapshot ID")
	}
	f.latest = out.SnapshotID
	return m, nil
}

func (f *ferryTool) restore(ctx context.Context, target string) (string, measurement, error) {
	if f.latest == "" {
		return "", measurement{}, errors.New("ferry: no snapshot to restore")
	}
	_, m, err := f.runOp(opRestore, f.command(ctx, opRestore, "-snapshot="+f.latest, "-target="+target))
	return target, m, err
}
