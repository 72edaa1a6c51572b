#!/usr/bin/env bash
# Installs every test dependency that is missing, at pinned versions, into
# $(go env GOPATH)/bin. Idempotent: what is already there is kept.
set -euo pipefail

GOBIN="$(go env GOPATH)/bin"
export PATH="$GOBIN:$PATH"

# name|module@version|binary
tools=(
  "in-toto|github.com/in-toto/in-toto-golang@v0.11.0|in-toto-golang"
  "staticcheck|honnef.co/go/tools/cmd/staticcheck@v0.8.2|staticcheck"
  "cosign|github.com/sigstore/cosign/v2/cmd/cosign@v2.6.5|cosign"
  "crane|github.com/google/go-containerregistry/cmd/crane@v0.22.1|crane"
  "ko|github.com/google/ko@v0.19.1|ko"
)

for t in "${tools[@]}"; do
  IFS='|' read -r name mod bin <<<"$t"
  want="${mod##*@}"
  stamp="$GOBIN/.$bin.version"
  if [[ -x "$GOBIN/$bin" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    continue
  fi
  echo "installing $name ($mod)" >&2
  go install "$mod"
  echo "$want" >"$stamp"
done

# slsa-verifier for the VSA interop test (pkg/vsa): verify-vsa exists from
# v2.7.0. `go install ...@v2.7.1` fails here (the proxy refuses the module's
# version list, which go install reads for deprecations), so it is built
# from a throwaway module that requires the exact version.
slsa_want=v2.7.1
if [[ ! -x "$GOBIN/slsa-verifier" || "$(cat "$GOBIN/.slsa-verifier.version" 2>/dev/null)" != "$slsa_want" ]]; then
  echo "installing slsa-verifier (github.com/slsa-framework/slsa-verifier/v2@$slsa_want)" >&2
  tmp=$(mktemp -d)
  (
    cd "$tmp"
    go mod init slsa-verifier-build >/dev/null 2>&1
    go get "github.com/slsa-framework/slsa-verifier/v2/cli/slsa-verifier@$slsa_want" >/dev/null 2>get.log || { cat get.log >&2; exit 1; }
    go build -o "$GOBIN/slsa-verifier" github.com/slsa-framework/slsa-verifier/v2/cli/slsa-verifier
  )
  rm -rf "$tmp"
  echo "$slsa_want" >"$GOBIN/.slsa-verifier.version"
fi

# rekor-server-posix (sigstore/rekor-tiles, Rekor v2 on a POSIX directory) for
# pkg/rekor's tests: a real log the publisher writes to and cosign's bundle
# verification reads. v2.3.0 is the newest that builds with Go 1.26 (v2.4.x
# needs Go 1.27). `go install` names the binary after its directory
# ("posix"), so it is built into a temp dir and renamed.
rekor_want=v2.3.0
if [[ ! -x "$GOBIN/rekor-server-posix" || "$(cat "$GOBIN/.rekor-server-posix.version" 2>/dev/null)" != "$rekor_want" ]]; then
  echo "installing rekor-server-posix (github.com/sigstore/rekor-tiles/v2@$rekor_want)" >&2
  tmp=$(mktemp -d)
  GOBIN="$tmp" go install "github.com/sigstore/rekor-tiles/v2/cmd/rekor-server/posix@$rekor_want"
  mv "$tmp/posix" "$GOBIN/rekor-server-posix"
  rm -rf "$tmp"
  echo "$rekor_want" >"$GOBIN/.rekor-server-posix.version"
fi

# omniwitness (transparency-dev/witness, a C2SP tlog-witness) for
# pkg/logserver's witness tests: a real witness cosigns the served log's
# checkpoints and refuses a forked one. The module has no tags; this
# pseudo-version (2026-07-20) builds with Go 1.26 (pure-Go sqlite).
witness_want=v0.0.0-20260720115447-2e1c6971d19e
if [[ ! -x "$GOBIN/omniwitness" || "$(cat "$GOBIN/.omniwitness.version" 2>/dev/null)" != "$witness_want" ]]; then
  echo "installing omniwitness (github.com/transparency-dev/witness@$witness_want)" >&2
  go install "github.com/transparency-dev/witness/cmd/omniwitness@$witness_want"
  echo "$witness_want" >"$GOBIN/.omniwitness.version"
fi

# SeaweedFS (Apache-2.0), the S3-compatible server of pkg/logserver/awslog's
# replica test (internal/s3test). `go install ...@version` refuses it (its
# go.mod has replace directives), so it is built inside the downloaded
# module, where they apply.
weed_want=v0.0.0-20261109003541-7506e5f91cd6
if [[ ! -x "$GOBIN/weed" || "$(cat "$GOBIN/.weed.version" 2>/dev/null)" != "$weed_want" ]]; then
  echo "installing weed (github.com/seaweedfs/seaweedfs@$weed_want)" >&2
  weed_dir=$(GOFLAGS= go mod download -json "github.com/seaweedfs/seaweedfs@$weed_want" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  (cd "$weed_dir" && GOFLAGS=-mod=mod go build -o "$GOBIN/weed" ./weed)
  echo "$weed_want" >"$GOBIN/.weed.version"
fi

# Debian packages the tests use.
need_apt=()
command -v sha256sum >/dev/null || need_apt+=(coreutils)
[[ -x /usr/bin/time ]] || need_apt+=(time)
command -v openssl >/dev/null || need_apt+=(openssl)
command -v diff >/dev/null || need_apt+=(diffutils)
command -v curl >/dev/null || need_apt+=(curl)
command -v gzip >/dev/null || need_apt+=(gzip)
command -v docker-registry >/dev/null || need_apt+=(docker-registry)
command -v skopeo >/dev/null || need_apt+=(skopeo)
# socat, unshare (util-linux) and ip (iproute2): controllers/config/admission's
# W33 test runs Tekton's controller in a network namespace of its own.
command -v socat >/dev/null || need_apt+=(socat)
command -v unshare >/dev/null || need_apt+=(util-linux)
command -v ip >/dev/null || need_apt+=(iproute2)
# PostgreSQL's server binaries for pkg/store/pgstore's tests (pgtest finds
# them under /usr/lib/postgresql/*/bin; it runs initdb and pg_ctl itself).
compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null || need_apt+=(postgresql)
# MariaDB's server for pkg/logserver/awslog's replica test (internal/mysqltest
# runs mariadb-install-db and mariadbd itself; the package's own service is
# not used).
[[ -x /usr/sbin/mariadbd ]] || need_apt+=(mariadb-server)
if ((${#need_apt[@]})); then
  echo "installing ${need_apt[*]} with apt-get" >&2
  SUDO=""
  [[ $(id -u) -eq 0 ]] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# kube-apiserver v1.35.4 for the controller's integration tests (cached in
# $(go env GOPATH)/bin; a cold build takes minutes and ~2 GB).
"$(dirname "$0")/kube/build-apiserver.sh" >/dev/null
# etcd v3.6.5 for it, built from its Go module (Debian's etcd-server 3.4
# cannot serve the streaming lists informers use; see build-etcd.sh).
"$(dirname "$0")/kube/build-etcd.sh" >/dev/null
# Tekton Pipelines' controller at the module's version (the admission W33
# test; shares the build cache of go build ./...).
"$(dirname "$0")/kube/build-node.sh" tekton >/dev/null
