# Ferry — see README.md. Every target installs what it needs; tools are pinned and land in ./bin.
SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

BIN            := $(CURDIR)/bin
CONTROLLER_GEN := $(BIN)/controller-gen
CONTROLLER_TOOLS_VERSION := v0.19.0
GO_TEST_FLAGS  ?= -timeout 60m
export GOTOOLCHAIN := local
export GOFLAGS := -buildvcs=false

.PHONY: all
all: build

##@ Build
.PHONY: build
build: ## Build the four programs into ./bin.
	CGO_ENABLED=0 go build -trimpath -o $(BIN)/ ./cmd/...

##@ Code generation
$(CONTROLLER_GEN):
	GOBIN=$(BIN) go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_TOOLS_VERSION)

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Regenerate deepcopy, CRDs and RBAC from the markers.
	$(CONTROLLER_GEN) object paths=./api/...
	$(CONTROLLER_GEN) crd:allowDangerousTypes=false paths=./api/... output:crd:dir=config/crd/bases
	$(CONTROLLER_GEN) rbac:roleName=ferry-server paths="./internal/server/...;./internal/controller/backup/...;./internal/controller/backuprepository/...;./internal/controller/backupstoragelocation/...;./internal/controller/backupsync/...;./internal/controller/backupverification/...;./internal/controller/deletebackuprequest/...;./internal/controller/restore/...;./internal/controller/nodeagentconfig/...;./internal/controller/repositorypassword/...;./internal/controller/operationdeadline/...;./internal/controller/schedule/..." output:rbac:dir=config/rbac/server
	$(CONTROLLER_GEN) rbac:roleName=ferry-node-agent paths="./internal/nodeagent/...;./internal/controller/podvolumebackup/...;./internal/controller/podvolumerestore/...;./internal/controller/datamovement/...;./internal/controller/nodeagentconfig/..." output:rbac:dir=config/rbac/node-agent
	$(CONTROLLER_GEN) rbac:roleName=ferry-datamover paths="./internal/datamover/..." output:rbac:dir=config/rbac/datamover
	$(CONTROLLER_GEN) rbac:roleName=ferry-node-agent-velero-crds paths="./internal/operation/..." output:rbac:dir=config/rbac/velero-crds

.PHONY: verify-generated
verify-generated: $(CONTROLLER_GEN) ## Fail when generated files differ from what the markers produce.
	CONTROLLER_GEN=$(CONTROLLER_GEN) hack/verify-generated.sh

##@ Test
.PHONY: control-plane
control-plane: ## Build (once) the kube-apiserver and etcd the tests run against.
	@hack/install-control-plane.sh >/dev/null

.PHONY: lint
lint: ## gofmt and go vet.
	@unformatted=$$(gofmt -l $$(git ls-files --cached --others --exclude-standard '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "not gofmt-formatted: $$unformatted" >&2; exit 1; fi
	go vet ./...

.PHONY: test-tools
test-tools: ## Build (once per machine) the S3 server, the kopia CLI, and Velero's server, CLI and AWS plugin the tests run against.
	@hack/install-tool.sh versitygw >/dev/null
	@hack/install-tool.sh kopia >/dev/null
	@hack/install-velero.sh >/dev/null

.PHONY: test
test: verify-generated lint test-tools ## Everything: generated-code check, lint, layering, all test tiers, then the e2e tier (root).
	KUBEBUILDER_ASSETS=$$(hack/install-control-plane.sh) go test $(GO_TEST_FLAGS) ./...
	hack/test-e2e.sh

.PHONY: bench-datamover
bench-datamover: ## The data mover vs the file-system path on the real cluster (root): 3 interleaved rounds of a fresh claim (FERRY_BENCH_MIB, default 1024).
	FERRY_E2E_BENCH=1 E2E_FLAGS='-run ^TestBenchDataMoverVsFileSystem$$' hack/test-e2e.sh

.PHONY: test-e2e
test-e2e: ## The end-to-end tier alone: a real single-node cluster (root), Ferry installed into it, test/e2e's stories.
	hack/test-e2e.sh

##@ Real cluster (root; hack/cluster/README.md)
.PHONY: cluster-install
cluster-install: ## Build and install what the real cluster needs, once per machine (cached in ~/.cache/ferry/cluster).
	hack/cluster/install.sh

.PHONY: cluster-up
cluster-up: cluster-install ## Start the real single-node cluster; prints its kubeconfig.
	hack/cluster/up.sh

.PHONY: cluster-down
cluster-down: ## Stop the real cluster and undo every mount, link, iptables rule and cgroup it made.
	hack/cluster/down.sh

.PHONY: image
image: ## Build Ferry's image offline and import it into the running cluster; prints the image reference.
	hack/cluster/image.sh

##@ Benchmark
BENCH_SCALE ?= full
BENCH_ROUNDS ?= 3
BENCH_FACTOR ?= 0.01
.PHONY: bench
bench: ## Ferry vs the kopia CLI (default and Ferry's hash), restic (default and no compression) and tar -x on one generated dataset, BENCH_ROUNDS interleaved rounds (BENCH_SCALE=small|full).
	go run ./test/bench -scale $(BENCH_SCALE) -rounds $(BENCH_ROUNDS)

.PHONY: bench-scale
bench-scale: ## Many small files and one large file, Ferry vs the kopia CLI and tar -x, sized by BENCH_FACTOR (1 = 2M files; default 0.01), BENCH_ROUNDS rounds.
	go run ./test/bench -suite scale -factor $(BENCH_FACTOR) -rounds $(BENCH_ROUNDS)

##@ Run
DEMO_S3 ?= 0
.PHONY: demo
demo: ## Ferry's main job on a real single-node cluster (root): backup, namespace deleted, restore, verify (DEMO_KEEP=1 keeps the cluster).
	hack/demo.sh

.PHONY: demo-sim
demo-sim: ## The same story without root: a local control plane, 2 simulated nodes (DEMO_S3=1: into a local S3 server).
	KUBEBUILDER_ASSETS=$$(hack/install-control-plane.sh) FERRY_DEMO=1 FERRY_DEMO_S3=$(DEMO_S3) \
	  go test ./test/demo -run '^TestDemo$$' -count=1 -v -timeout 30m

.PHONY: help
help: ## Show the targets.
	@awk 'BEGIN{FS=":.*##"} /^[a-zA-Z0-9_-]+:.*##/{printf "  %-18s %s\n",$$1,$$2} /^##@/{printf "\n%s\n",substr($$0,5)}' $(MAKEFILE_LIST)
