package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// memoryCgroup runs the measured tool processes under a memory limit, as a container's would
// be (-memory-limit): a process over it, page cache and kernel memory included, is killed by
// the kernel. Ferry's programs read their cgroup's limit at start (internal/memlimit), so each
// child must be in the group from its first instruction: with cgroup v2 it is created in it
// (clone3 with CLONE_INTO_CGROUP); with cgroup v1 the benchmark joins the group for the moment
// of the fork and leaves it right after (memory charged before or after stays where it was).
type memoryCgroup struct {
	dir   string
	v2    bool
	limit int64
	// home is the benchmark's own v1 memory cgroup, returned to after each fork.
	home string
}

const (
	cgroupRoot   = "/sys/fs/cgroup"
	cgroupV1Root = "/sys/fs/cgroup/memory"
)

// newMemoryCgroup creates a memory cgroup limited to limit bytes (root only).
func newMemoryCgroup(limit int64) (*memoryCgroup, error) {
	name := fmt.Sprintf("ferry-bench-%d", os.Getpid())
	g := &memoryCgroup{limit: limit}
	var limitFile string
	switch {
	case fileExists(filepath.Join(cgroupRoot, "cgroup.controllers")):
		g.v2, g.dir, limitFile = true, filepath.Join(cgroupRoot, name), "memory.max"
	case fileExists(filepath.Join(cgroupV1Root, "memory.limit_in_bytes")):
		g.dir, limitFile = filepath.Join(cgroupV1Root, name), "memory.limit_in_bytes"
		home, err := ownV1MemoryCgroup()
		if err != nil {
			return nil, err
		}
		g.home = home
	default:
		return nil, errors.New("-memory-limit: no cgroup v2 hierarchy or v1 memory controller under " + cgroupRoot)
	}
	if err := os.Mkdir(g.dir, 0o755); err != nil {
		return nil, fmt.Errorf("-memory-limit needs root and a writable cgroup file system: %w", err)
	}
	if err := os.WriteFile(filepath.Join(g.dir, limitFile), []byte(strconv.FormatInt(limit, 10)), 0o644); err != nil {
		g.remove()
		return nil, fmt.Errorf("-memory-limit: set %s: %w", limitFile, err)
	}
	if g.v2 { // no swap to spill into, as in a container on a node without swap
		_ = os.WriteFile(filepath.Join(g.dir, "memory.swap.max"), []byte("0"), 0o644)
	}
	return g, nil
}

// ownV1MemoryCgroup returns the directory of this process's v1 memory cgroup.
func ownV1MemoryCgroup() (string, error) {
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() { // hierarchy-ID:controller-list:path
		parts := strings.SplitN(s.Text(), ":", 3)
		if len(parts) == 3 && strings.Contains(","+parts[1]+",", ",memory,") {
			return filepath.Join(cgroupV1Root, parts[2]), nil
		}
	}
	return "", errors.New("-memory-limit: this process is in no v1 memory cgroup")
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// start starts cmd inside the group.
func (g *memoryCgroup) start(cmd *exec.Cmd) error {
	if g.v2 {
		fd, err := unix.Open(g.dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if cmd.SysProcAttr == nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{}
		}
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, fd
		return cmd.Start()
	}
	if err := joinCgroup(g.dir); err != nil {
		return err
	}
	err := cmd.Start()
	if jerr := joinCgroup(g.home); jerr != nil && err == nil {
		err = fmt.Errorf("leave the benchmark's memory cgroup: %w", jerr)
	}
	return err
}

// joinCgroup moves this process (every thread) into the v1 cgroup dir.
func joinCgroup(dir string) error {
	return os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0o644)
}

// oomKills returns how many processes the kernel killed in the group for want of memory.
func (g *memoryCgroup) oomKills() int64 {
	file := "memory.oom_control"
	if g.v2 {
		file = "memory.events"
	}
	data, err := os.ReadFile(filepath.Join(g.dir, file))
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(data)) {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), " "); ok && k == "oom_kill" {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

// remove deletes the group (it must be empty: every child has exited).
func (g *memoryCgroup) remove() { _ = os.Remove(g.dir) }
