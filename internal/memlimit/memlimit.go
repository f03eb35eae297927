// Package memlimit gives the Go runtime a soft memory limit below the container's memory limit.
//
// Go follows a container's CPU limit (GOMAXPROCS) but not its memory limit: without a soft
// limit the garbage collector lets the heap grow to twice what is live before it collects, and a
// backup of millions of small files whose live heap fits the container is OOM-killed on that
// headroom. With the limit set, the collector works harder as the process nears it instead. It
// is a soft limit: a live heap above it is not an error, only more collection (and the kernel's
// OOM kill past the container's limit, as without it).
package memlimit

import (
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
)

// Fraction of the container's limit given to the Go runtime; the rest is for what the runtime
// does not count: mapped index files, thread stacks, the kernel's buffers charged to the cgroup.
const Fraction = 0.9

// unlimited is the cgroup v1 value above which a limit means none (the kernel writes the largest
// page-aligned int64).
const unlimited = 1 << 60

// Apply sets the runtime's soft memory limit to Fraction of the memory limit of this process's
// cgroup, read under root (normally "/"), unless GOMEMLIMIT is set (the runtime has applied it).
// It returns the limit it set, or 0 when it set none (no limit, or GOMEMLIMIT given).
func Apply(root string) int64 {
	if os.Getenv("GOMEMLIMIT") != "" {
		return 0
	}
	limit := CgroupLimit(root)
	if limit <= 0 {
		return 0
	}
	soft := int64(float64(limit) * Fraction)
	debug.SetMemoryLimit(soft)
	return soft
}

// CgroupLimit returns the memory limit of this process's cgroup, read under root: cgroup v2's
// memory.max, else cgroup v1's memory.limit_in_bytes, each first at the process's own cgroup as
// /proc/self/cgroup names it (a process on a host, or in a container with a cgroup namespace),
// then at the hierarchy's mount point (a container without one, where the runtime mounts the
// container's own cgroup there); 0 when there is none or it cannot be read.
func CgroupLimit(root string) int64 {
	v2, v1 := "/", "/"
	if data, err := os.ReadFile(filepath.Join(root, "proc/self/cgroup")); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			// hierarchy-ID:controllers:path
			parts := strings.SplitN(line, ":", 3)
			if len(parts) != 3 {
				continue
			}
			if parts[0] == "0" && parts[1] == "" {
				v2 = parts[2]
			} else if slices.Contains(strings.Split(parts[1], ","), "memory") {
				v1 = parts[2]
			}
		}
	}
	for _, f := range []string{
		filepath.Join("sys/fs/cgroup", v2, "memory.max"),
		"sys/fs/cgroup/memory.max",
		filepath.Join("sys/fs/cgroup/memory", v1, "memory.limit_in_bytes"),
		"sys/fs/cgroup/memory/memory.limit_in_bytes",
	} {
		data, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			continue
		}
		v := strings.TrimSpace(string(data))
		if v == "max" {
			return 0
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 || n >= unlimited {
			return 0
		}
		return n
	}
	return 0
}
