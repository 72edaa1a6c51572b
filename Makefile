# stepseal — the README's two commands are `make demo` and `make test`.
SHELL := /bin/bash
GOBIN := $(shell go env GOPATH)/bin
export PATH := $(GOBIN):$(PATH)
FUZZTIME ?= 10s

.PHONY: demo test build deps lint unit fuzz realnode bench clean release tuf-conformance-client

build:
	go build -o bin/ ./images/stepseal ./images/stepseal-tekton

## tuf-conformance-client: the TUF conformance suite's client-under-test on
## pkg/trust (README, "TUF conformance suite").
tuf-conformance-client:
	go build -o bin/ ./hack/tuf-conformance-client

## demo: build the CLI and run examples/go-build on this host (no cluster),
## ending with the verification verdict.
demo: build
	rm -rf out/go-build
	./bin/stepseal run examples/go-build --out out/go-build

## test: install missing test dependencies, then run every test.
test: deps lint unit fuzz realnode

deps:
	./hack/install-test-deps.sh

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	go vet ./...
	staticcheck ./...

## unit: every test (PostgreSQL's tests fail rather than skip when it is
## missing: deps installs it); the controller chaos tests (each starts its own
## kube-apiserver and kills processes on purpose) run after the rest, alone.
unit:
	PGTEST_REQUIRED=1 go test -count=1 -timeout 20m -skip '^TestChaos' ./...
	go test -count=1 -timeout 20m -p 1 -run '^TestChaos' ./controllers/...

## realnode: the TestRealNode* tests on a real single-node Kubernetes with
## Tekton's controller (hack/kube/realnode-test.sh: builds what is missing,
## starts the node, runs the tests, always stops the node). Needs root.
realnode:
	./hack/kube/realnode-test.sh

## fuzz: every fuzz target briefly (longer by hand: make fuzz FUZZTIME=10m).
fuzz:
	./hack/fuzz.sh $(FUZZTIME)

## release: build the controller and admission webhook images with ko, push
## them to KO_DOCKER_REPO and write release.yaml, admission.yaml and
## release-statefulset.yaml (the controller as a StatefulSet, instead of
## release.yaml) for kubectl apply -f (see hack/release.sh for options).
release:
	ADMISSION_YAML=admission.yaml STATEFULSET_YAML=release-statefulset.yaml ./hack/release.sh

## bench: the benchmarks, with the served log at a million entries
## (hack/bench/logscale.sh; FIXTURE=DIR keeps the million-entry log between
## runs, it takes long to build).
bench:
	./hack/bench/verify.sh
	./hack/bench/hash.sh
	./hack/bench/localrun.sh
	./hack/bench/logscale.sh 1000000

clean:
	rm -rf bin out
