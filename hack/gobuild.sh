# gobuild.sh — build pinned programs from the Go module proxy through wrapper modules (sourced by
# install-control-plane.sh and cluster/install.sh, so both build Kubernetes and etcd the same way
# and share Go's build cache).
#
# Why wrapper modules: k8s.io/kubernetes and go.etcd.io/etcd/server/v3 carry `replace` directives,
# so `go install pkg@version` refuses them. A small main module that requires them builds fine; for
# Kubernetes it must also map each staging module (required there as v0.0.0) to its published
# v0.X.Y release. Every build is static (CGO_ENABLED=0) and -trimpath.
export GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0 GOFLAGS="-modcacherw -buildvcs=false"

# write_module DIR CONTENT: DIR/go.mod with CONTENT; go.sum is kept while go.mod is unchanged.
write_module() {
  mkdir -p "$1"
  if ! cmp -s <(printf '%s\n' "$2") "$1/go.mod.want" 2>/dev/null; then
    printf '%s\n' "$2" >"$1/go.mod.want"
    cp "$1/go.mod.want" "$1/go.mod"
    rm -f "$1/go.sum"
  fi
}

# tools_go DIR PKG...: a tools.go in DIR importing the packages to build.
tools_go() {
  local p
  { printf '//go:build tools\n\npackage tools\n\nimport (\n'; for p in "${@:2}"; do printf '\t_ "%s"\n' "$p"; done; printf ')\n'; } >"$1/tools.go"
}

# gomod_of WORKDIR MODULE@VERSION: the path of that module's go.mod in the module cache.
gomod_of() {
  (cd "$1" && go list -m -f '{{.GoMod}}' "$2") || { echo "$2 is not available from the module proxy" >&2; return 1; }
}

# build_k8s VERSION WORKDIR OUTDIR CMD...: build the Kubernetes commands (kube-apiserver,
# kubelet, ...) at VERSION into OUTDIR, their --version reporting VERSION.
build_k8s() {
  local version=$1 work=$2 out=$3; shift 3
  local dir="$work/kubernetes-$version" gomod gover minor ld p mod pkgs=()
  mkdir -p "$work" "$out"
  gomod=$(gomod_of "$work" "k8s.io/kubernetes@$version") || return 1
  gover=$(awk '$1=="go"{print $2; exit}' "$gomod")
  mod="module ferry.local/build/kubernetes

go $gover

require k8s.io/kubernetes $version

replace ("
  for p in $(awk '$2=="v0.0.0" && $1 ~ /^k8s\.io\// {print $1}' "$gomod" | sort -u); do
    mod+=$'\n'"	$p => $p v0.${version#v1.}"
  done
  mod+=$'\n)'
  write_module "$dir" "$mod"
  for p in "$@"; do pkgs+=("k8s.io/kubernetes/cmd/$p"); done
  tools_go "$dir" "${pkgs[@]}"
  (cd "$dir" && go mod tidy) || { echo "go mod tidy for kubernetes $version failed" >&2; return 1; }
  minor=$(echo "$version" | cut -d. -f2)
  ld="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $p.gitVersion=$version -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
  mkdir -p "$dir/out"
  (cd "$dir" && go build -trimpath -ldflags "$ld" -o "$dir/out/" "${pkgs[@]}") || return 1
  for p in "$@"; do mv -f "$dir/out/$p" "$out/$p"; done
}

# build_etcd VERSION WORKDIR OUT: build etcd's server at VERSION as the file OUT.
build_etcd() {
  local version=$1 work=$2 out=$3 dir="$2/etcd-$1" gomod gover
  mkdir -p "$work"
  gomod=$(gomod_of "$work" "go.etcd.io/etcd/server/v3@$version") || return 1
  gover=$(awk '$1=="go"{print $2; exit}' "$gomod")
  write_module "$dir" "module ferry.local/build/etcd

go $gover

require go.etcd.io/etcd/server/v3 $version"
  tools_go "$dir" go.etcd.io/etcd/server/v3
  (cd "$dir" && go mod tidy) || { echo "go mod tidy for etcd $version failed" >&2; return 1; }
  (cd "$dir" && go build -trimpath -ldflags "-s -w" -o "$out.tmp" go.etcd.io/etcd/server/v3) || return 1
  mv -f "$out.tmp" "$out"
}
