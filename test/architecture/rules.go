package architecture

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Module is the import path of Ferry's module.
const Module = "github.com/ferry-backup/ferry"

const kopia = "github.com/kopia/kopia"

// layers ranks Ferry's packages: a package may import only packages of a lower rank, or packages
// of its own unit (the prefix it matched, e.g. internal/repository/repotest from
// internal/repository). "*" matches one path element, so each controller is its own unit.
var layers = []struct {
	prefix string
	rank   int
}{
	{"api", 0},
	{"internal/buildinfo", 1},
	{"internal/logging", 1},
	{"internal/metrics", 1},
	{"internal/scheme", 1},
	{"internal/hostpath", 1},
	{"internal/nodeconfig", 1},
	{"internal/slot", 1},
	{"internal/backuprecord", 1},
	{"internal/onchange", 1},
	{"internal/credentialfiles", 1},
	{"internal/memlimit", 1},
	{"config/crd", 1},
	{"config/rbac", 1},
	{"internal/repository", 2},
	{"internal/uploader", 3},
	{"internal/exposer", 3},
	{"internal/repoaccess", 3},
	{"internal/restic", 3},
	{"internal/operation", 3},
	{"internal/podvolume", 3},
	{"internal/serverjob", 3},
	{"internal/controller/*", 4},
	{"internal/manager", 5},
	{"internal/server", 6},
	{"internal/nodeagent", 6},
	{"internal/datamover", 6},
	{"internal/cli", 6},
	{"internal/testenv", 7},
	{"cmd/*", 8},
	{"test", 9},
}

// kopiaImporters are the units allowed to import Kopia directly.
var kopiaImporters = []string{"internal/repository", "internal/uploader"}

// apiClients are units that talk to the API server only, and the only units of Ferry they may
// import: the user CLI never reaches the data path (repository, uploader, repository access)
// nor a controller, whatever their rank.
var apiClients = map[string][]string{
	"internal/cli": {"api", "internal/scheme", "internal/buildinfo", "internal/credentialfiles", "config/crd", "config/rbac"},
}

// Package is one node of the import graph: a path relative to the module and its direct
// (non-test) imports, given as full import paths.
type Package struct {
	Path    string
	Imports []string
}

// unit returns the layer prefix a module-relative path belongs to and its rank.
func unit(path string) (string, int, bool) {
	for _, l := range layers {
		prefix := l.prefix
		if strings.HasSuffix(prefix, "/*") {
			base := strings.TrimSuffix(prefix, "*")
			if !strings.HasPrefix(path, base) {
				continue
			}
			first, _, _ := strings.Cut(strings.TrimPrefix(path, base), "/")
			return base + first, l.rank, true
		}
		if path == prefix || strings.HasPrefix(path, prefix+"/") {
			return prefix, l.rank, true
		}
	}
	return "", 0, false
}

// isTestSupport reports whether a package exists only for tests (testenv, repotest, test/...),
// packages below one included (internal/repository/repotest/faults3).
func isTestSupport(path string) bool {
	for _, el := range strings.Split(path, "/") {
		if strings.HasPrefix(el, "test") || strings.HasSuffix(el, "test") {
			return true
		}
	}
	return false
}

// Violations returns every broken rule in the graph, sorted.
func Violations(pkgs []Package) []string {
	var out []string
	for _, p := range pkgs {
		from, fromRank, ok := unit(p.Path)
		if !ok {
			out = append(out, fmt.Sprintf("%s: not in the layer table (add it to ARCHITECTURE.md and test/architecture)", p.Path))
			continue
		}
		for _, imp := range p.Imports {
			out = append(out, checkImport(p.Path, from, fromRank, imp)...)
		}
	}
	sort.Strings(out)
	return out
}

func checkImport(path, from string, fromRank int, imp string) []string {
	if imp == kopia || strings.HasPrefix(imp, kopia+"/") {
		for _, allowed := range kopiaImporters {
			if from == allowed {
				return nil
			}
		}
		return []string{fmt.Sprintf("%s imports %s: only %s may import Kopia", path, imp, strings.Join(kopiaImporters, " and "))}
	}
	if from == "api" && !isAPIImport(imp) {
		return []string{fmt.Sprintf("%s imports %s: api may import only k8s.io/api, k8s.io/apimachinery and the standard library", path, imp)}
	}
	if !strings.HasPrefix(imp, Module+"/") {
		return nil
	}
	rel := strings.TrimPrefix(imp, Module+"/")
	to, toRank, ok := unit(rel)
	switch {
	case !ok:
		return []string{fmt.Sprintf("%s imports %s, which is not in the layer table", path, rel)}
	case isTestSupport(rel) && !isTestSupport(path):
		return []string{fmt.Sprintf("%s imports %s: product code must not depend on test support", path, rel)}
	case to == from:
		return nil
	case apiClients[from] != nil && !slices.Contains(apiClients[from], to):
		return []string{fmt.Sprintf("%s imports %s: %s talks to the API server only and may import only %s", path, rel, from, strings.Join(apiClients[from], ", "))}
	case toRank >= fromRank:
		return []string{fmt.Sprintf("%s imports %s: %s (rank %d) may import only lower layers, not %s (rank %d)", path, rel, from, fromRank, to, toRank)}
	}
	return nil
}

func isAPIImport(imp string) bool {
	if !strings.Contains(strings.SplitN(imp, "/", 2)[0], ".") {
		return true // standard library
	}
	for _, allowed := range []string{"k8s.io/api/", "k8s.io/apimachinery/", Module + "/api/"} {
		if strings.HasPrefix(imp, allowed) {
			return true
		}
	}
	return false
}

// LinksKopia returns the Kopia packages among a program's transitive dependencies.
func LinksKopia(deps []string) []string {
	var out []string
	for _, d := range deps {
		if d == kopia || strings.HasPrefix(d, kopia+"/") {
			out = append(out, d)
		}
	}
	return out
}
