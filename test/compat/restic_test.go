package compat

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferry-backup/ferry/api/shared"
	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/repository"
	"github.com/ferry-backup/ferry/internal/repository/repotest"
	"github.com/ferry-backup/ferry/internal/restic/restictest"
	"github.com/ferry-backup/ferry/test/harness"
)

// resticURL is the restic repository Velero keeps for namespace at an S3 location, as its
// server writes it into spec.repoIdentifier (pkg/repository/config GetRepoIdentifier).
func resticURL(bsl *velerov1.BackupStorageLocation, namespace string) string {
	return "s3:" + bsl.Spec.Config["s3Url"] + "/" + path.Join(bsl.Spec.ObjectStorage.Bucket, bsl.Spec.ObjectStorage.Prefix, "restic", namespace)
}

var s3Creds = repository.Credentials{AccessKeyID: repotest.AccessKey, SecretAccessKey: repotest.SecretKey}

// volumeTree writes what a pod left in a volume: files of several modes and sizes, times to
// the nanosecond, symlinks (relative, absolute, dangling), an empty directory, a FIFO.
func volumeTree(t *testing.T, dir string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(harness.FillVolume(dir, 6, 6<<20, 7))
	must(os.MkdirAll(filepath.Join(dir, "conf/d"), 0o755))
	must(os.Mkdir(filepath.Join(dir, "vacant"), 0o700))
	must(os.WriteFile(filepath.Join(dir, "conf/app.yaml"), []byte("a: 1\n"), 0o640))
	must(os.WriteFile(filepath.Join(dir, "conf/d/run.sh"), []byte("#!/bin/sh\n"), 0o755))
	must(os.Chmod(filepath.Join(dir, "conf/d/run.sh"), 0o755|os.ModeSetuid))
	must(os.WriteFile(filepath.Join(dir, "conf/zero"), nil, 0o600))
	must(os.Symlink("app.yaml", filepath.Join(dir, "conf/link")))
	must(os.Symlink("/etc/passwd", filepath.Join(dir, "abs")))
	must(os.Symlink("nowhere", filepath.Join(dir, "dangling")))
	must(syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644))
	when := time.Date(2021, 6, 7, 8, 9, 10, 123456789, time.UTC)
	for _, p := range []string{"conf/app.yaml", "conf/d/run.sh", "conf/d", "vacant", "conf"} {
		must(os.Chtimes(filepath.Join(dir, p), when, when))
	}
}

func describe(t *testing.T, dir string, skip ...string) string {
	t.Helper()
	d, err := harness.Describe(dir, skip...)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// withVeleroRestic shapes a PodVolumeRestore as Velero's server creates one for a volume its
// restic uploader backed up.
func withVeleroRestic(bsl, repoIdentifier, sourceNamespace string) func(*velerov1.PodVolumeRestore) {
	return func(p *velerov1.PodVolumeRestore) {
		p.Labels = map[string]string{velerov1.LabelRestoreName: "r1", velerov1.LabelRestoreUID: "0f3c-uid", "velero.io/pod-uid": string(p.Spec.Pod.UID)}
		p.Spec.BackupStorageLocation, p.Spec.RepoIdentifier, p.Spec.SourceNamespace = bsl, repoIdentifier, sourceNamespace
		p.Spec.UploaderType = velerov1.UploaderTypeRestic
	}
}

// A volume Velero's restic uploader backed up (the restic program, in the repository Velero
// keeps at <bucket>/<prefix>/restic/<namespace>, with Velero's password Secret) is restored by
// Ferry's node-agent byte for byte, with its modes, times, symlinks and empty directories,
// whether the PodVolumeRestore names the repository (as Velero's server does) or not.
func TestResticRestoreFromVelerosRepository(t *testing.T) {
	c := harness.New(t)
	bsl := c.CreateS3BSL("s3")
	node := c.StartNode("node-a")
	ns := c.Namespace("app")
	src := t.TempDir()
	volumeTree(t, src)
	repo := restictest.New(t, resticURL(bsl, ns), harnessPassword, s3Creds)
	id := repo.Backup(src, map[string]string{"backup": "b1", "volume": "data", "ns": ns, "pod": "web"})

	named := c.CreatePod(node, ns, "named", harness.VolumeSpec{Name: "data", Claim: "named-data"})
	derived := c.CreatePod(node, ns, "derived", harness.VolumeSpec{Name: "data"})
	pvrs := []*velerov1.PodVolumeRestore{
		c.RestoreVolume(named, "data", id, "restic-named", withVeleroRestic("s3", resticURL(bsl, ns), ns)),
		c.RestoreVolume(derived, "data", id, "restic-derived", withVeleroRestic("s3", "", "")),
	}
	want := describe(t, src, "fifo")
	for i, pod := range []*harness.Pod{named, derived} {
		pvr := pvrs[i]
		c.WaitPhase(pvr, velerov1.PodVolumePhaseCompleted, 2*time.Minute)
		if got := describe(t, pod.Dirs["data"]); got != want {
			t.Errorf("%s: restored tree differs\n got:\n%s\nwant:\n%s", pvr.Name, got, want)
		}
		fi, err := os.Stat(filepath.Join(pod.Dirs["data"], "conf/d/run.sh"))
		if err != nil || fi.ModTime().Nanosecond() != 123456789 || fi.Mode()&os.ModeSetuid == 0 {
			t.Errorf("%s: conf/d/run.sh restored as %v %v (%v)", pvr.Name, fi.Mode(), fi.ModTime(), err)
		}
		p := pvr.Status.Progress
		if p.TotalBytes < 6<<20 || p.BytesDone != p.TotalBytes {
			t.Errorf("%s: progress %+v", pvr.Name, p)
		}
		if !strings.Contains(pvr.Status.Message, "1 entries not restored") || !strings.Contains(pvr.Status.Message, "fifo (FIFO)") {
			t.Errorf("%s: the FIFO left out is not reported: %q", pvr.Name, pvr.Status.Message)
		}
	}
	if log := node.Log(); strings.Contains(log, harnessPassword) || strings.Contains(log, repotest.SecretKey) {
		t.Errorf("the node-agent logged a secret:\n%s", log)
	}
}

// Each way a restic restore cannot start fails its PodVolumeRestore with a message naming the
// cause, and writes nothing into the volume.
func TestResticRestoreFailures(t *testing.T) {
	c := harness.New(t)
	bsl := c.CreateS3BSL("s3")
	node := c.StartNode("node-a")
	ns, other, empty := c.Namespace("app"), c.Namespace("other"), c.Namespace("empty")
	src := t.TempDir()
	volumeTree(t, src)
	id := restictest.New(t, resticURL(bsl, ns), harnessPassword, s3Creds).Backup(src, nil)
	otherID := restictest.New(t, resticURL(bsl, other), "not-the-secret", s3Creds).Backup(src, nil)

	for _, tc := range []struct {
		name, snapshotID, namespace, repoIdentifier, want string
	}{
		{"wrong-password", otherID, other, resticURL(bsl, other), "wrong password for the restic repository"},
		{"missing-snapshot", strings.Repeat("0", 64), ns, resticURL(bsl, ns), "snapshot " + strings.Repeat("0", 64) + ": no such snapshot"},
		{"missing-repository", id, empty, resticURL(bsl, empty), "no restic repository at this location"},
		{"not-a-snapshot-id", "latest", ns, resticURL(bsl, ns), "not a restic snapshot ID"},
		{"elsewhere", id, ns, "sftp:attacker@example.com:/srv", "is not an s3: repository"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := c.CreatePod(node, ns, tc.name, harness.VolumeSpec{Name: "data"})
			pvr := c.RestoreVolume(pod, "data", tc.snapshotID, tc.name, withVeleroRestic("s3", tc.repoIdentifier, tc.namespace))
			c.WaitPhase(pvr, velerov1.PodVolumePhaseFailed, 2*time.Minute)
			if !strings.Contains(pvr.Status.Message, tc.want) || !strings.Contains(pvr.Status.Message, "restic") {
				t.Errorf("message %q does not say %q", pvr.Status.Message, tc.want)
			}
			if entries, _ := os.ReadDir(pod.Dirs["data"]); len(entries) != 0 {
				t.Errorf("the failed restore wrote %d entries", len(entries))
			}
		})
	}
}

// fakeRestic is a restic program that lists any snapshot and dumps <dir>/<id>.tar; with
// <dir>/<id>.hang it then waits (as restic waiting on a slow store). It records its pid.
func fakeRestic(t *testing.T, dir string) string {
	t.Helper()
	script := filepath.Join(dir, "restic")
	body := fmt.Sprintf(`#!/bin/sh
id=""; prev=""
for a in "$@"; do [ "$prev" = "--" ] && [ -z "$id" ] && id="$a"; prev="$a"; done
case "$1" in
ls) printf '{"struct_type":"snapshot","id":"%%s"}\n' "$id" ;;
dump) echo $$ > %[1]s/$id.pid; cat %[1]s/$id.tar; [ -e %[1]s/$id.hang ] && exec sleep 600 ;;
esac
`, dir)
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return script
}

// tarOf is a tar archive of headers (a regular file gets size bytes of "x").
func tarOf(t *testing.T, end bool, headers ...*tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range headers {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg && end {
			if _, err := tw.Write(bytes.Repeat([]byte("x"), int(h.Size))); err != nil {
				t.Fatal(err)
			}
		}
	}
	if end {
		if err := tw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// A tenant controls what its volume held when it was backed up and what it holds now. Neither a
// symlink planted in the target nor an archive entry naming ../ or an absolute path gets a byte
// written outside the volume.
func TestResticRestoreWritesNothingOutside(t *testing.T) {
	c := harness.New(t)
	bsl := c.CreateS3BSL("s3")
	fakes := t.TempDir()
	real, fake := c.StartNode("node-a"), c.StartNode("node-b", "--restic-binary", fakeRestic(t, fakes))
	ns := c.Namespace("app")
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret")
	if err := os.WriteFile(secret, []byte("other tenant"), 0o600); err != nil {
		t.Fatal(err)
	}
	untouched := describe(t, outside)

	// The snapshot holds conf/app.yaml; the target's conf is a symlink to another tenant's data.
	src := t.TempDir()
	volumeTree(t, src)
	id := restictest.New(t, resticURL(bsl, ns), harnessPassword, s3Creds).Backup(src, nil)
	pod := c.CreatePod(real, ns, "planted", harness.VolumeSpec{Name: "data"})
	if err := os.Symlink(outside, filepath.Join(pod.Dirs["data"], "conf")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(pod.Dirs["data"], "abs")); err != nil {
		t.Fatal(err)
	}
	pvr := c.RestoreVolume(pod, "data", id, "planted", withVeleroRestic("s3", resticURL(bsl, ns), ns))
	c.WaitPhase(pvr, velerov1.PodVolumePhaseCompleted, 2*time.Minute)
	if got, want := describe(t, pod.Dirs["data"]), describe(t, src, "fifo"); got != want {
		t.Errorf("restored tree differs\n got:\n%s\nwant:\n%s", got, want)
	}

	// Archives that try to leave the volume.
	for i, name := range []string{"../escape", "/" + filepath.Join(outside, "escape"), "a/../../escape", "./../../escape"} {
		id := fmt.Sprintf("%064x", i+1)
		data := tarOf(t, true, &tar.Header{Name: "ok", Typeflag: tar.TypeReg, Mode: 0o644, Size: 2},
			&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: 6})
		if err := os.WriteFile(filepath.Join(fakes, id+".tar"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		pod := c.CreatePod(fake, ns, "escape-"+strconv.Itoa(i), harness.VolumeSpec{Name: "data"})
		pvr := c.RestoreVolume(pod, "data", id, "escape-"+strconv.Itoa(i), withVeleroRestic("s3", resticURL(bsl, ns), ns))
		c.WaitPhase(pvr, velerov1.PodVolumePhaseFailed, 2*time.Minute)
		if !strings.Contains(pvr.Status.Message, "outside the volume") {
			t.Errorf("%q: message %q", name, pvr.Status.Message)
		}
		for _, p := range []string{filepath.Join(pod.Dirs["data"], "..", "escape"), filepath.Join(filepath.Dir(filepath.Dir(pod.Dirs["data"])), "escape")} {
			if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%q: %s was written (%v)", name, p, err)
			}
		}
	}
	if got := describe(t, outside); got != untouched {
		t.Errorf("outside the volume changed:\n%s\nwas:\n%s", got, untouched)
	}
}

// spec.cancel and spec.operationTimeout end a restic restore while restic streams: restic is
// stopped, and the PodVolumeRestore ends Canceled or Failed.
func TestResticRestoreCancelAndTimeout(t *testing.T) {
	c := harness.New(t)
	c.CreateS3BSL("s3")
	fakes := t.TempDir()
	node := c.StartNode("node-a", "--restic-binary", fakeRestic(t, fakes))
	ns := c.Namespace("app")
	for i, tc := range []struct {
		name   string
		mutate func(*velerov1.PodVolumeRestore)
		phase  velerov1.PodVolumePhase
	}{
		{"cancel", func(*velerov1.PodVolumeRestore) {}, velerov1.PodVolumePhaseCanceled},
		{"timeout", func(p *velerov1.PodVolumeRestore) {
			p.Spec.OperationTimeout = &shared.Duration{Duration: 5 * time.Second}
		}, velerov1.PodVolumePhaseFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := fmt.Sprintf("%064x", 100+i)
			// A file whose content never comes: the restore waits on restic.
			data := tarOf(t, false, &tar.Header{Name: "big", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1 << 30})
			for f, b := range map[string][]byte{id + ".tar": data, id + ".hang": nil} {
				if err := os.WriteFile(filepath.Join(fakes, f), b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			pod := c.CreatePod(node, ns, tc.name, harness.VolumeSpec{Name: "data"})
			pvr := c.RestoreVolume(pod, "data", id, tc.name, withVeleroRestic("s3", "", ""), tc.mutate)
			var pid int
			c.Eventually(time.Minute, func() (bool, string) {
				b, err := os.ReadFile(filepath.Join(fakes, id+".pid"))
				pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
				return err == nil && pid > 0, "restic has not started"
			})
			if tc.name == "cancel" {
				c.PatchSpec(pvr, map[string]any{"cancel": true})
			}
			c.WaitPhase(pvr, tc.phase, 2*time.Minute)
			if tc.phase == velerov1.PodVolumePhaseFailed && !strings.Contains(pvr.Status.Message, "timed out") {
				t.Errorf("message %q does not say it timed out", pvr.Status.Message)
			}
			c.Eventually(30*time.Second, func() (bool, string) {
				return syscall.Kill(pid, 0) != nil, fmt.Sprintf("restic (pid %d) still runs", pid)
			})
			if entries, _ := os.ReadDir(pod.Dirs["data"]); len(entries) != 0 {
				t.Errorf("a partial file was left: %v", entries)
			}
		})
	}
}

// New backups never use restic: a PodVolumeBackup asking for the restic uploader fails saying so,
// instead of storing a Kopia snapshot Velero would later hand to restic.
func TestResticBackupIsRefused(t *testing.T) {
	c := harness.New(t)
	node := c.StartNode("node-a")
	pod := c.CreatePod(node, c.Namespace("app"), "web", harness.VolumeSpec{Name: "data"})
	if err := harness.FillVolume(pod.Dirs["data"], 2, 1<<10, 1); err != nil {
		t.Fatal(err)
	}
	pvb := c.BackupVolume(pod, "data", "restic-backup", func(p *velerov1.PodVolumeBackup) { p.Spec.UploaderType = velerov1.UploaderTypeRestic })
	c.WaitPhase(pvb, velerov1.PodVolumePhaseFailed, time.Minute)
	if !strings.Contains(pvb.Status.Message, "Kopia only") || pvb.Status.SnapshotID != "" {
		t.Errorf("status %+v", pvb.Status)
	}
}
