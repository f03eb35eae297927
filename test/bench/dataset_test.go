package main

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// tiny is a dataset small enough for unit tests, with every kind of entry.
var tiny = spec{smallFiles: 40, filesPerDir: 10, largeFiles: 2, largeSize: 1 * mib, textFiles: 2, textSize: 64 * kib, changeFactor: 100}

func generateTiny(t *testing.T) (*dataset, treeStats) {
	t.Helper()
	ds, err := generate(filepath.Join(t.TempDir(), "data"), tiny)
	if err != nil {
		t.Fatal(err)
	}
	st, err := scan(ds.root)
	if err != nil {
		t.Fatal(err)
	}
	return ds, st
}

func TestDatasetIsReproducible(t *testing.T) {
	a, stA := generateTiny(t)
	b, stB := generateTiny(t)
	if stA != stB {
		t.Fatalf("two generations differ: %v and %v", stA, stB)
	}
	if stA.files != tiny.smallFiles+tiny.largeFiles+tiny.textFiles+1 || stA.symlinks != 3 {
		t.Errorf("unexpected dataset: %v", stA)
	}
	if err := verifyTree(a.root, b.root); err != nil {
		t.Fatalf("two generations differ: %v", err)
	}
	repA, err := a.applyChange(stA.bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.applyChange(stB.bytes); err != nil {
		t.Fatal(err)
	}
	if err := verifyTree(a.root, b.root); err != nil {
		t.Fatalf("the change is not reproducible: %v", err)
	}
	if share := float64(repA.total()) / float64(stA.bytes); share < 0.008 || share > 0.02 {
		t.Errorf("the change touched %.2f%% of the bytes, want about 1%%: %v", 100*share, repA)
	}
}

func TestChangeIsVisible(t *testing.T) {
	a, stA := generateTiny(t)
	b, _ := generateTiny(t)
	if _, err := a.applyChange(stA.bytes); err != nil {
		t.Fatal(err)
	}
	err := verifyTree(a.root, b.root)
	if err == nil {
		t.Fatal("the changed dataset equals the original")
	}
	for _, want := range []string{"contents differ: large/", "missing: small/added/", "unexpected: small/a000/"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("verification error lacks %q:\n%v", want, err)
		}
	}
}

func TestVerifyTreeFindsEveryDifference(t *testing.T) {
	tests := []struct {
		name   string
		modify func(root string) error
		want   string
	}{
		{"contents", func(root string) error {
			return writeAt(filepath.Join(root, "large", "blob-00.bin"), []byte("x"), 1000)
		}, "contents differ: large/blob-00.bin"},
		{"mode", func(root string) error {
			return os.Chmod(filepath.Join(root, "text", "dir0", "app-00.log"), 0o600)
		}, "differs: text/dir0/app-00.log"},
		{"directory mode", func(root string) error {
			return os.Chmod(filepath.Join(root, "empty", "private"), 0o755)
		}, "differs: empty/private"},
		{"symlink target", func(root string) error {
			p := filepath.Join(root, "links", "to-dir")
			if err := os.Remove(p); err != nil {
				return err
			}
			return os.Symlink("../large", p)
		}, "differs: links/to-dir"},
		{"missing empty directory", func(root string) error {
			return os.Remove(filepath.Join(root, "empty", "a"))
		}, "missing: empty/a"},
		{"extra file", func(root string) error {
			return os.WriteFile(filepath.Join(root, "extra"), nil, 0o644)
		}, "unexpected: extra"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, _ := generateTiny(t)
			b, _ := generateTiny(t)
			if err := tt.modify(b.root); err != nil {
				t.Fatal(err)
			}
			err := verifyTree(a.root, b.root)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("verifyTree() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestRotateGivesEveryToolEveryPlace(t *testing.T) {
	tools := []string{"a", "b", "c"}
	want := [][]string{{"a", "b", "c"}, {"b", "c", "a"}, {"c", "a", "b"}, {"a", "b", "c"}}
	for round, w := range want {
		if got := rotate(tools, round); strings.Join(got, "") != strings.Join(w, "") {
			t.Errorf("rotate(round %d) = %v, want %v", round, got, w)
		}
	}
}

func TestMedian(t *testing.T) {
	for _, tt := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestShapesScale(t *testing.T) {
	sh := shapes["235k-100B"].scaled(0.001)
	if sh.files != 235 || sh.dirs != 137 || sh.size != 100 {
		t.Errorf("235k-100B × 0.001 = %+v", sh)
	}
	if l := shapes["large"].scaled(0.001); l.files != 1 || l.size != int64(math.Round(10<<30*0.001)) {
		t.Errorf("large × 0.001 = %+v", l)
	}
	root := filepath.Join(t.TempDir(), "data")
	if err := generateShape(root, sh); err != nil {
		t.Fatal(err)
	}
	st, err := scan(root)
	if err != nil {
		t.Fatal(err)
	}
	// 137 directories below one top-level directory.
	if st.files != 235 || st.dirs != 138 || st.bytes != 23500 {
		t.Errorf("generated %v, want 235 files of 100 B in 137 directories (+1 top level)", st)
	}
	again := filepath.Join(t.TempDir(), "data")
	if err := generateShape(again, sh); err != nil {
		t.Fatal(err)
	}
	if err := verifyTree(root, again); err != nil {
		t.Errorf("two generations differ: %v", err)
	}
}
