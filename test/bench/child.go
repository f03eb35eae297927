package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// measurement is what one child process cost.
type measurement struct {
	wall      time.Duration
	cpu       time.Duration // user + system
	maxRSSKiB int64         // peak resident set size of the child (ru_maxrss, KiB on Linux)
	stdout    []byte
}

// memoryLimit, when set (-memory-limit), is the memory cgroup every measured process runs in.
var memoryLimit *memoryCgroup

// run runs cmd as a child process and measures it. Dirty pages are flushed first (untimed), so
// that one tool's writes are not paid for by the next one.
func run(cmd *exec.Cmd) (measurement, error) {
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	syscall.Sync()
	start := time.Now()
	var err error
	if g := memoryLimit; g != nil {
		kills := g.oomKills()
		if err = g.start(cmd); err == nil {
			err = cmd.Wait()
		}
		if err != nil && g.oomKills() > kills {
			err = fmt.Errorf("%w: killed by the kernel for want of memory (-memory-limit %d MiB, page cache included)", err, g.limit>>20)
		}
	} else {
		err = cmd.Run()
	}
	m := measurement{wall: time.Since(start), stdout: stdout.Bytes()}
	if err != nil {
		return m, fmt.Errorf("%s: %w\n%s", describe(cmd), err, tail(stderr.String(), 40))
	}
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		return m, errors.New("no rusage for the child process (not Linux?)")
	}
	m.maxRSSKiB = ru.Maxrss
	m.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return m, nil
}

// describe names a command for error messages: its binary and arguments.
func describe(cmd *exec.Cmd) string {
	return filepath.Base(cmd.Path) + " " + strings.Join(cmd.Args[1:], " ")
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{"..."}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// lastJSONLine returns the last line of out that starts with '{'.
func lastJSONLine(out []byte) ([]byte, error) {
	lines := bytes.Split(bytes.TrimSpace(out), []byte("\n"))
	for i := len(lines) - 1; i >= 0; i-- {
		if l := bytes.TrimSpace(lines[i]); bytes.HasPrefix(l, []byte("{")) {
			return l, nil
		}
	}
	return nil, fmt.Errorf("no JSON line in the output:\n%s", tail(string(out), 10))
}

// diskUsage returns the apparent size of the files below root (like du --apparent-size -b).
func diskUsage(root string) (int64, error) {
	var total int64
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil || !e.Type().IsRegular() {
			return err
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		total += info.Size()
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("measure %s: %w", root, err)
	}
	return total, nil
}
