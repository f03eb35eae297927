package architecture

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestRulesCatchWrongImports feeds the checker graphs with one deliberate mistake each.
func TestRulesCatchWrongImports(t *testing.T) {
	m := Module + "/"
	cases := []struct {
		name string
		pkg  Package
		want string
	}{
		{"api imports ours", Package{"api/v1", []string{m + "internal/logging"}}, "api may import only"},
		{"api imports controller-runtime", Package{"api/v1", []string{"sigs.k8s.io/controller-runtime/pkg/scheme"}}, "api may import only"},
		{"kopia in a controller", Package{"internal/controller/backup", []string{"github.com/kopia/kopia/repo"}}, "only internal/repository and internal/uploader may import Kopia"},
		{"controllers import each other", Package{"internal/controller/backup", []string{m + "internal/controller/restore"}}, "may import only lower layers"},
		{"adapter imports a controller", Package{"internal/repository", []string{m + "internal/controller/backup"}}, "may import only lower layers"},
		{"product imports test support", Package{"internal/server", []string{m + "internal/testenv"}}, "must not depend on test support"},
		{"unknown package", Package{"internal/util", nil}, "not in the layer table"},
		{"kopia in the CLI", Package{"internal/cli", []string{"github.com/kopia/kopia/snapshot"}}, "only internal/repository and internal/uploader may import Kopia"},
		{"the CLI imports the uploader", Package{"internal/cli", []string{m + "internal/uploader"}}, "talks to the API server only"},
		{"the CLI imports the repository", Package{"internal/cli", []string{m + "internal/repository"}}, "talks to the API server only"},
		{"the CLI imports a controller", Package{"internal/cli", []string{m + "internal/controller/backup"}}, "talks to the API server only"},
		{"product imports test support below a test package", Package{"internal/uploader", []string{m + "internal/repository/repotest/faults3"}}, "must not depend on test support"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := Violations([]Package{tc.pkg})
			if len(got) != 1 || !strings.Contains(got[0], tc.want) {
				t.Fatalf("violations = %q, want one mentioning %q", got, tc.want)
			}
		})
	}
	allowed := []Package{
		{"internal/uploader", []string{"github.com/kopia/kopia/snapshot/upload", m + "internal/repository"}},
		{"internal/repository/repotest", []string{m + "internal/repository"}},
		{"internal/controller/backup", []string{m + "internal/controller/backup/phase", m + "api/v1"}},
		{"api/v1", []string{"k8s.io/api/core/v1", m + "api/shared", "fmt"}},
		{"internal/cli", []string{m + "api/v1", m + "internal/scheme", m + "config/crd", "github.com/vbauerster/mpb/v8"}},
	}
	if got := Violations(allowed); len(got) != 0 {
		t.Fatalf("allowed imports reported: %q", got)
	}
	if got := LinksKopia([]string{"fmt", "github.com/kopia/kopia/repo/blob"}); len(got) != 1 {
		t.Fatalf("LinksKopia = %q, want the blob package", got)
	}
}

// TestFerryFollowsTheRules checks the real import graph.
func TestFerryFollowsTheRules(t *testing.T) {
	var pkgs []Package
	for _, p := range goList(t, "./...") {
		pkgs = append(pkgs, Package{Path: strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, Module), "/"), Imports: p.Imports})
	}
	if len(pkgs) < 10 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	for _, v := range Violations(pkgs) {
		t.Error(v)
	}
}

// TestCLIDoesNotLinkKopia keeps the user CLI small and free of the data path.
func TestCLIDoesNotLinkKopia(t *testing.T) {
	pkgs := goList(t, "-deps", "./cmd/ferry")
	var deps []string
	for _, p := range pkgs {
		deps = append(deps, p.ImportPath)
	}
	if k := LinksKopia(deps); len(k) > 0 {
		t.Fatalf("cmd/ferry links Kopia: %v", k)
	}
}

type listed struct {
	ImportPath string
	Imports    []string
}

func goList(t *testing.T, args ...string) []listed {
	t.Helper()
	touchSources(t)
	cmd := exec.Command("go", append([]string{"list", "-json=ImportPath,Imports"}, args...)...)
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []listed
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p listed
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// touchSources stats every Go file of the module. go test caches a result by the files a test
// looked at; `go list` runs in another process, so without this a changed import would not
// invalidate a cached pass.
func touchSources(t *testing.T) {
	t.Helper()
	err := filepath.WalkDir("../..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "bin" || strings.HasPrefix(d.Name(), ".")) && path != "../.." {
			return filepath.SkipDir
		}
		if !d.IsDir() && (strings.HasSuffix(path, ".go") || d.Name() == "go.mod") {
			_, err = os.Stat(path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
