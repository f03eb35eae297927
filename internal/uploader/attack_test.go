package uploader_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/ferry-backup/ferry/internal/repository/repotest"
	"github.com/ferry-backup/ferry/internal/uploader"
)

// The tenant of a volume races the node-agent: while Ferry backs up or restores the volume, a
// process swaps its files and directories for symlinks to another tenant's data, and files for
// FIFOs, in a loop. Across many rounds, not one byte from outside the volume may end up in a
// snapshot, not one byte may be written outside it, and no operation may hang.

const attackRounds = 100

// attacker swaps entries of the volume until stop is closed; it counts its swaps.
type attacker struct {
	vol, outside string
	swaps        atomic.Int64
}

// swap replaces path by what make creates there, leaves it there for hold (the attacker's
// timing, not a synchronisation), then puts the original back.
func (a *attacker) swap(path string, hold time.Duration, make func(string) error) {
	aside := path + ".aside"
	if os.Rename(path, aside) != nil {
		return
	}
	if make(path) == nil {
		a.swaps.Add(1)
		time.Sleep(hold)
		_ = os.Remove(path)
	}
	_ = os.Rename(aside, path)
}

func (a *attacker) run(stop <-chan struct{}, wg *sync.WaitGroup, targets []string) {
	defer wg.Done()
	secretFile, secretDir := filepath.Join(a.outside, "secret.txt"), a.outside
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		p := filepath.Join(a.vol, targets[i%len(targets)])
		hold := time.Duration(i%7) * 500 * time.Microsecond
		switch i % 3 {
		case 0:
			a.swap(p, hold, func(p string) error { return os.Symlink(secretFile, p) })
		case 1:
			a.swap(p, hold, func(p string) error { return os.Symlink(secretDir, p) })
		case 2:
			a.swap(p, hold, func(p string) error { return syscall.Mkfifo(p, 0o644) })
		}
	}
}

// plant puts, at names the restore is about to write, symlinks to the other tenant's secret
// and directory, FIFOs and hard links to the secret, and takes each away again (unless the
// restore replaced it meanwhile), until stop is closed; it counts its plants as swaps.
func (a *attacker) plant(stop <-chan struct{}, wg *sync.WaitGroup, names []string) {
	defer wg.Done()
	secretFile := filepath.Join(a.outside, "secret.txt")
	secret, err := os.Lstat(secretFile)
	if err != nil {
		return
	}
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		p := filepath.Join(a.vol, names[i%len(names)])
		switch i % 4 {
		case 0:
			err = os.Symlink(secretFile, p)
		case 1:
			err = os.Symlink(a.outside, p)
		case 2:
			err = syscall.Mkfifo(p, 0o644)
		case 3:
			err = os.Link(secretFile, p)
		}
		if err != nil {
			continue // taken: by the restore's file or an earlier plant
		}
		a.swaps.Add(1)
		if i%3 == 0 {
			continue // left in place for the restore to meet
		}
		if st, err := os.Lstat(p); err == nil && (!st.Mode().IsRegular() || os.SameFile(st, secret)) {
			_ = os.Remove(p)
		}
	}
}

// outsideWithSecret makes the other tenant's directory: a secret no snapshot may hold.
func outsideWithSecret(t *testing.T) (dir string, secret []byte) {
	dir = t.TempDir()
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	secret = []byte("SECRET-" + hex.EncodeToString(b))
	if err := os.WriteFile(filepath.Join(dir, "secret.txt"), secret, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, secret
}

func TestBackupUnderSymlinkAndFIFORacesReadsNothingOutside(t *testing.T) {
	rep := openRepo(t, repotest.Filesystem(t), "pw")
	outside, secret := outsideWithSecret(t)
	vol := t.TempDir()
	var targets []string
	for i := range 6 {
		d := filepath.Join(vol, fmt.Sprintf("d%d", i))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		for j := range 4 {
			if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("f%d", j)), bytes.Repeat([]byte{byte('a' + j)}, 4096), 0o644); err != nil {
				t.Fatal(err)
			}
			targets = append(targets, fmt.Sprintf("d%d/f%d", i, j))
		}
		targets = append(targets, fmt.Sprintf("d%d", i))
	}
	a := &attacker{vol: vol, outside: outside}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 3 { // three attackers, each on its own share of the targets
		wg.Add(1)
		go a.run(stop, &wg, targets[i*len(targets)/3:(i+1)*len(targets)/3])
	}

	escapes, failedEntries := 0, 0
	for round := range attackRounds {
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		res, err := uploader.Backup(ctx, rep, vol, uploader.BackupOptions{Source: fmt.Sprintf("/victim/%d", round)}) // no parent: every file is read
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("round %d: the backup hung (a FIFO?)", round)
		}
		if err != nil {
			continue // a directory swapped at the wrong moment may fail the whole backup; never a leak
		}
		failedEntries += res.Stats.Errors
		dst := t.TempDir()
		if _, err := uploader.Restore(t.Context(), rep, res.SnapshotID, dst, uploader.RestoreOptions{}); err != nil {
			t.Fatalf("round %d: restore of the snapshot: %v", round, err)
		}
		escapes += countSecret(t, dst, secret)
	}
	close(stop)
	wg.Wait()
	t.Logf("%d backups during %d swaps: %d entries reported as not backed up, %d escapes", attackRounds, a.swaps.Load(), failedEntries, escapes)
	if escapes > 0 {
		t.Fatalf("%d files in snapshots hold the other tenant's secret", escapes)
	}
	if a.swaps.Load() < attackRounds {
		t.Fatalf("only %d swaps in %d rounds: the race was not exercised", a.swaps.Load(), attackRounds)
	}
}

func TestRestoreUnderSymlinkRacesWritesNothingOutside(t *testing.T) {
	rep := openRepo(t, repotest.Filesystem(t), "pw")
	src := t.TempDir()
	var targets, files, dirs []string
	for i := range 6 {
		d := filepath.Join(src, fmt.Sprintf("d%d", i))
		if err := os.MkdirAll(filepath.Join(d, "sub"), 0o755); err != nil {
			t.Fatal(err)
		}
		for j := range 4 {
			if err := os.WriteFile(filepath.Join(d, "sub", fmt.Sprintf("f%d", j)), []byte("PAYLOAD"), 0o644); err != nil {
				t.Fatal(err)
			}
			files = append(files, fmt.Sprintf("d%d/sub/f%d", i, j))
		}
		dirs = append(dirs, fmt.Sprintf("d%d", i), fmt.Sprintf("d%d/sub", i))
	}
	targets = append(append(targets, files...), dirs...)
	res, err := uploader.Backup(t.Context(), rep, src, uploader.BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	outside, secret := outsideWithSecret(t)
	before := listing(t, outside)

	escapes, failed := 0, 0
	var swaps int64
	for round := range attackRounds {
		vol := t.TempDir()
		a := &attacker{vol: vol, outside: outside}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		if round%2 == 0 {
			// The tenant's volume already has the snapshot's tree (a restore into a running
			// pod), so that the attacker has something to swap from the first moment.
			if err := os.CopyFS(vol, os.DirFS(src)); err != nil {
				t.Fatal(err)
			}
			go a.run(stop, &wg, targets)
		} else {
			// Only the directories: the restore creates each file under its free name, while
			// the tenant plants entries at the names it has yet to write.
			for _, d := range dirs {
				if err := os.MkdirAll(filepath.Join(vol, d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			go a.plant(stop, &wg, files)
		}
		// The restore starts once the attacker has swapped something, however the two goroutines
		// are scheduled: every round is raced.
		for deadline := time.Now().Add(time.Minute); a.swaps.Load() == 0; runtime.Gosched() {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: the attacker swapped nothing in a minute", round)
			}
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		_, err := uploader.Restore(ctx, rep, res.SnapshotID, vol, uploader.RestoreOptions{})
		cancel()
		close(stop)
		wg.Wait()
		swaps += a.swaps.Load()
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("round %d: the restore hung", round)
		}
		if err != nil {
			failed++
		}
		if after := listing(t, outside); after != before {
			escapes++
			t.Errorf("round %d: the directory outside the volume changed:\n%s\nwas:\n%s", round, after, before)
		}
		if got, _ := os.ReadFile(filepath.Join(outside, "secret.txt")); !bytes.Equal(got, secret) {
			t.Fatalf("round %d: a file outside the volume was overwritten", round)
		}
	}
	t.Logf("%d restores during %d swaps: %d refused with an error, %d escapes", attackRounds, swaps, failed, escapes)
	if swaps < attackRounds {
		t.Fatalf("only %d swaps in %d rounds: the race was not exercised", swaps, attackRounds)
	}
}

// countSecret counts the regular files below dir that hold secret.
func countSecret(t *testing.T, dir string, secret []byte) int {
	n := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		data, err := os.ReadFile(p)
		if err == nil && bytes.Contains(data, secret) {
			n++
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// listing describes every entry below dir: path, type, size and modification time.
func listing(t *testing.T, dir string) string {
	var b strings.Builder
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %s %d %d\n", p, info.Mode(), info.Size(), info.ModTime().UnixNano())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// Special files are never opened (a FIFO would block the open forever) and never silently
// dropped: the backup reports each of them. Hostile names round-trip like any other.
func TestSpecialFilesAreReportedAndHostileNamesRoundTrip(t *testing.T) {
	rep := openRepo(t, repotest.Filesystem(t), "pw")
	vol := t.TempDir()
	names := []string{"plain", "with space", "invalid-utf8-\xff\xfe", strings.Repeat("n", 255), "looks.kopia-entry", "..dots", "-dash"}
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(vol, n), []byte(n), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(vol, "absolute-link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../../outside", filepath.Join(vol, "climbing-link")); err != nil {
		t.Fatal(err)
	}
	special := []string{"fifo"}
	if err := syscall.Mkfifo(filepath.Join(vol, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if err := syscall.Mknod(filepath.Join(vol, "null-device"), syscall.S_IFCHR|0o644, 1<<8|3); err != nil {
			t.Fatal(err)
		}
		special = append(special, "null-device")
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	res, err := uploader.Backup(ctx, rep, vol, uploader.BackupOptions{})
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	if res.Stats.Errors != len(special) {
		t.Errorf("%d entries reported as not backed up, want %d (%v): %q", res.Stats.Errors, len(special), special, res.Stats.ErrorMessages)
	}
	for _, s := range special {
		if !strings.Contains(strings.Join(res.Stats.ErrorMessages, "\n"), s) {
			t.Errorf("the report does not name %s: %q", s, res.Stats.ErrorMessages)
		}
	}
	dst := t.TempDir()
	if _, err := uploader.Restore(t.Context(), rep, res.SnapshotID, dst, uploader.RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		// Kopia stores names as JSON strings: a name that is not UTF-8 comes back with U+FFFD in
		// place of its invalid bytes (a known limitation, docs/security.md); its content is kept.
		restored := jsonName(n)
		if got, err := os.ReadFile(filepath.Join(dst, restored)); err != nil || string(got) != n {
			t.Errorf("%q restored as %q with %q, %v", n, restored, got, err)
		}
	}
	for link, want := range map[string]string{"absolute-link": "/etc/passwd", "climbing-link": "../../../outside"} {
		if got, err := os.Readlink(filepath.Join(dst, link)); err != nil || got != want {
			t.Errorf("symlink %s restored as %q, %v", link, got, err)
		}
	}
	for _, s := range special {
		if _, err := os.Lstat(filepath.Join(dst, s)); err == nil {
			t.Errorf("%s was restored", s)
		}
	}
}

// jsonName is name as Go's JSON encoder keeps it: each invalid byte becomes U+FFFD.
func jsonName(name string) string {
	var b strings.Builder
	for len(name) > 0 {
		r, size := utf8.DecodeRuneInString(name)
		b.WriteRune(r) // utf8.RuneError for an invalid byte
		name = name[size:]
	}
	return b.String()
}

// The restore marker Velero's restore-wait container waits for is written beneath the volume:
// a symlink the pod planted at .velero (or at the marker itself) is replaced, never followed.
func TestRestoreMarkerIsNeverWrittenThroughASymlink(t *testing.T) {
	outside, _ := outsideWithSecret(t)
	before := listing(t, outside)
	for _, plant := range []string{".velero", ".velero/uid-1"} {
		vol := t.TempDir()
		if err := os.MkdirAll(filepath.Join(vol, filepath.Dir(plant)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(outside, filepath.Join(vol, plant)); err != nil {
			t.Fatal(err)
		}
		if err := uploader.WriteBeneath(vol, ".velero/uid-1", nil); err != nil {
			t.Fatalf("planted %s: %v", plant, err)
		}
		if st, err := os.Lstat(filepath.Join(vol, ".velero", "uid-1")); err != nil || !st.Mode().IsRegular() {
			t.Errorf("planted %s: the marker is %v, %v", plant, st, err)
		}
	}
	if after := listing(t, outside); after != before {
		t.Fatalf("the directory outside the volume changed:\n%s", after)
	}
}
