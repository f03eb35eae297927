package memlimit

import (
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"
)

func cgroupFile(t *testing.T, name, content string) string {
	t.Helper()
	root := t.TempDir()
	p := filepath.Join(root, "sys/fs/cgroup", name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

func TestCgroupLimit(t *testing.T) {
	for _, tc := range []struct {
		name, file, content string
		want                int64
	}{
		{"cgroup v2, 512 MiB", "memory.max", "536870912\n", 512 << 20},
		{"cgroup v2, no limit", "memory.max", "max\n", 0},
		{"cgroup v1, 2 GiB", "memory/memory.limit_in_bytes", "2147483648\n", 2 << 30},
		{"cgroup v1, no limit", "memory/memory.limit_in_bytes", "9223372036854771712\n", 0},
		{"unreadable value", "memory.max", "lots", 0},
	} {
		if got := CgroupLimit(cgroupFile(t, tc.file, tc.content)); got != tc.want {
			t.Errorf("%s: CgroupLimit = %d, want %d", tc.name, got, tc.want)
		}
	}
	if got := CgroupLimit(t.TempDir()); got != 0 {
		t.Errorf("no cgroup files: CgroupLimit = %d, want 0", got)
	}
}

// On a host, and in a container with a cgroup namespace, the limit is at the process's own
// cgroup; in a cgroup v1 container without one, /proc/self/cgroup names the host's path, which is
// not mounted, and the container's own cgroup is the mount point.
func TestCgroupLimitOfTheProcesssOwnCgroup(t *testing.T) {
	write := func(root, name, content string) {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	host := t.TempDir()
	write(host, "proc/self/cgroup", "5:devices:/\n4:memory:/bench/run1\n1:cpu,cpuacct:/\n0::/\n")
	write(host, "sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n")
	write(host, "sys/fs/cgroup/memory/bench/run1/memory.limit_in_bytes", "536870912\n")
	if got := CgroupLimit(host); got != 512<<20 {
		t.Errorf("cgroup v1 host: CgroupLimit = %d, want %d", got, 512<<20)
	}
	unified := t.TempDir()
	write(unified, "proc/self/cgroup", "0::/kubepods/pod1/c1\n")
	write(unified, "sys/fs/cgroup/kubepods/pod1/c1/memory.max", "1073741824\n")
	if got := CgroupLimit(unified); got != 1<<30 {
		t.Errorf("cgroup v2 host: CgroupLimit = %d, want %d", got, 1<<30)
	}
	container := t.TempDir()
	write(container, "proc/self/cgroup", "4:memory:/kubepods/burstable/pod1/c1\n0::/\n")
	write(container, "sys/fs/cgroup/memory/memory.limit_in_bytes", "2147483648\n")
	if got := CgroupLimit(container); got != 2<<30 {
		t.Errorf("cgroup v1 container: CgroupLimit = %d, want %d", got, 2<<30)
	}
}

func TestApplySetsNineTenthsOfTheContainersLimit(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	t.Setenv("GOMEMLIMIT", "")
	if got := Apply(cgroupFile(t, "memory.max", "1000000000")); got != 900000000 {
		t.Fatalf("Apply = %d, want 900000000", got)
	}
	if got := debug.SetMemoryLimit(-1); got != 900000000 {
		t.Errorf("the runtime's limit is %d, want 900000000", got)
	}
	debug.SetMemoryLimit(before)
	if got := Apply(cgroupFile(t, "memory.max", "max")); got != 0 || debug.SetMemoryLimit(-1) != before {
		t.Errorf("without a container limit Apply = %d and the runtime's limit changed", got)
	}
	t.Setenv("GOMEMLIMIT", "300MiB")
	if got := Apply(cgroupFile(t, "memory.max", "1000000000")); got != 0 || debug.SetMemoryLimit(-1) != before {
		t.Errorf("with GOMEMLIMIT set Apply = %d and the runtime's limit changed", got)
	}
}
