#!/usr/bin/env bash
# Builds the controller image with ko, pushes it to KO_DOCKER_REPO, and
# resolves controllers/config/ into one release YAML whose Deployment names
# the image by digest (KO_DOCKER_REPO/controller@sha256:...):
#
#   KO_DOCKER_REPO=registry.example.com/stepseal hack/release.sh   # writes release.yaml
#   kubectl apply -f release.yaml
#
# Environment:
#   KO_DOCKER_REPO  (required) repository prefix the image is pushed under.
#   RELEASE_YAML    output file; default release.yaml ("-" for stdout).
#   ADMISSION_YAML  when set, also resolves the admission webhook's YAML
#                   (controllers/config/admission/: the stepseal image,
#                   KO_DOCKER_REPO/stepseal@sha256:..., run as
#                   `stepseal admission serve`) into this file; make
#                   release sets admission.yaml. Apply it after
#                   release.yaml (it lives in the stepseal namespace).
#   STATEFULSET_YAML  when set, also resolves the StatefulSet-mode release
#                   into this file: controllers/config/ with
#                   controllers/config/optional/statefulset/ in place of
#                   500-controller.yaml (the controller a StatefulSet whose
#                   replica i reconciles bucket i, no Leases; same image).
#                   Apply it instead of release.yaml.
#   BASE_IMAGE      base image; default .ko.yaml's defaultBaseImage
#                   (cgr.dev/chainguard/static). "local" builds a minimal base
#                   here (the host's CA certificates, /etc/passwd with the
#                   nonroot user 65532, /tmp; no shell, no libc) and pushes it
#                   to KO_DOCKER_REPO/base: for hosts without access to public
#                   registries or a container engine.
#   PLATFORMS       ko --platform; default linux/amd64 (BASE_IMAGE=local
#                   builds its base for exactly this one platform).
#   CA_CERTS        CA bundle put into the local base; default
#                   /etc/ssl/certs/ca-certificates.crt.
#   CATALOG_KEY     when set, also publish stepseal's Tekton catalog: every
#                   task/<name>/<version>/<name>.yaml and
#                   stepaction/<name>/<version>/<name>.yaml resolved by ko (the
#                   stepseal image by digest, KO_DOCKER_REPO/stepseal@sha256:...)
#                   and pushed as one Tekton bundle, signed with this key
#                   (cosign's format; an encrypted key's password from
#                   COSIGN_PASSWORD), by hack/catalog-bundle. Prints the
#                   bundle's reference by digest (on stdout, unless
#                   RELEASE_YAML=- has it; always in the log line on stderr).
#   CATALOG_BUNDLE  where the bundle goes; default KO_DOCKER_REPO/catalog:latest.
#
# Needs Go, and installs what it runs that is missing or at another version
# into $(go env GOBIN), default $(go env GOPATH)/bin, with go install (through
# GOPROXY, or the module cache offline): ko v0.19.1 and, for BASE_IMAGE=local,
# crane v0.22.1 (the pins of hack/install-test-deps.sh; nothing else of the
# test dependencies). BASE_IMAGE=local also needs tar. Registries on
# 127.0.0.1 or localhost are reached over plain HTTP (ggcr's rule for
# loopback hosts).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
gobin="$(go env GOBIN)"
[[ -n "$gobin" ]] || gobin="$(go env GOPATH)/bin"
export PATH="$gobin:$PATH"

# Pinned as in hack/install-test-deps.sh (controllers/config's
# TestReleasePinsMatchTestDeps keeps the two in step).
ko_pkg=github.com/google/ko@v0.19.1
crane_pkg=github.com/google/go-containerregistry/cmd/crane@v0.22.1

# ensure BIN PKG@VERSION: $gobin/BIN is PKG's main package at VERSION, as
# the binary's build information says, or it is installed.
ensure() {
  local bin="$1" pkg="${2%@*}" want="${2##*@}" have=""
  if [[ -x "$gobin/$bin" ]]; then
    have="$(go version -m "$gobin/$bin" 2>/dev/null |
      awk -v pkg="$pkg" '$1 == "path" && $2 == pkg { ok = 1 } $1 == "mod" && ok { print $3; exit }')"
  fi
  if [[ "$have" == "$want" ]]; then
    return
  fi
  echo "hack/release.sh: installing $bin ($2) into $gobin" >&2
  GOBIN="$gobin" go install "$2"
  # The stamp hack/install-test-deps.sh checks, so that it keeps this binary.
  if [[ "$gobin" == "$(go env GOPATH)/bin" ]]; then
    echo "$want" >"$gobin/.$bin.version"
  fi
}

: "${KO_DOCKER_REPO:?set KO_DOCKER_REPO to the repository to push the controller image to}"
export KO_DOCKER_REPO
out="${RELEASE_YAML:-release.yaml}"
platforms="${PLATFORMS:-linux/amd64}"
base="${BASE_IMAGE:-}"

ensure ko "$ko_pkg"
if [[ "$base" == local ]]; then
  ensure crane "$crane_pkg"
  command -v tar >/dev/null || { echo "hack/release.sh: BASE_IMAGE=local needs tar" >&2; exit 2; }
fi

now_ms() { date +%s%3N; }

if [[ "$base" == local ]]; then
  if [[ "$platforms" == *,* ]]; then
    echo "hack/release.sh: BASE_IMAGE=local builds one platform, PLATFORMS=$platforms" >&2
    exit 2
  fi
  ca="${CA_CERTS:-/etc/ssl/certs/ca-certificates.crt}"
  [[ -r "$ca" ]] || { echo "hack/release.sh: no CA bundle at $ca (set CA_CERTS)" >&2; exit 2; }
  t0="$(now_ms)"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  mkdir -p "$tmp/fs/etc/ssl/certs" "$tmp/fs/tmp"
  chmod 1777 "$tmp/fs/tmp"
  cp "$ca" "$tmp/fs/etc/ssl/certs/ca-certificates.crt"
  chmod 0644 "$tmp/fs/etc/ssl/certs/ca-certificates.crt"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$tmp/fs/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$tmp/fs/etc/group"
  chmod 0644 "$tmp/fs/etc/passwd" "$tmp/fs/etc/group"
  # Same bytes for the same inputs: fixed order, owners and times.
  tar -C "$tmp/fs" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 \
    -cf "$tmp/layer.tar" etc tmp
  # crane append without --base starts from an empty image; the platform
  # and user are set afterwards, as the chainguard/static image has them.
  crane append --oci-empty-base -f "$tmp/layer.tar" -t "$KO_DOCKER_REPO/base:unplatformed" >/dev/null
  base="$(crane mutate "$KO_DOCKER_REPO/base:unplatformed" \
    --set-platform "$platforms" -u 65532 -e SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    -t "$KO_DOCKER_REPO/base:static")"
  # Deleting the manifest by digest drops its tag too (Distribution).
  crane delete "$(crane digest --full-ref "$KO_DOCKER_REPO/base:unplatformed")" 2>/dev/null || true
  echo "hack/release.sh: local base $base ($(( $(now_ms) - t0 )) ms)" >&2
fi
if [[ -n "$base" ]]; then
  export KO_DEFAULTBASEIMAGE="$base"
fi

cd "$root"
t0="$(now_ms)"
if [[ "$out" == - ]]; then
  ko resolve --base-import-paths --platform="$platforms" -f controllers/config/
else
  ko resolve --base-import-paths --platform="$platforms" -f controllers/config/ >"$out.tmp"
  mv "$out.tmp" "$out"
fi
msg="hack/release.sh: ko resolve took $(( $(now_ms) - t0 )) ms"
[[ "$out" == - ]] || msg+="; wrote $out"
echo "$msg" >&2

if [[ -n "${ADMISSION_YAML:-}" ]]; then
  t0="$(now_ms)"
  ko resolve --base-import-paths --platform="$platforms" -f controllers/config/admission/ >"$ADMISSION_YAML.tmp"
  mv "$ADMISSION_YAML.tmp" "$ADMISSION_YAML"
  echo "hack/release.sh: ko resolve (admission) took $(( $(now_ms) - t0 )) ms; wrote $ADMISSION_YAML" >&2
fi

if [[ -n "${STATEFULSET_YAML:-}" ]]; then
  t0="$(now_ms)"
  files=()
  for f in controllers/config/*.yaml; do
    [[ "$f" == controllers/config/500-controller.yaml ]] || files+=(-f "$f")
  done
  ko resolve --base-import-paths --platform="$platforms" "${files[@]}" \
    -f controllers/config/optional/statefulset/ >"$STATEFULSET_YAML.tmp"
  mv "$STATEFULSET_YAML.tmp" "$STATEFULSET_YAML"
  echo "hack/release.sh: ko resolve (StatefulSet mode) took $(( $(now_ms) - t0 )) ms; wrote $STATEFULSET_YAML" >&2
fi

if [[ -n "${CATALOG_KEY:-}" ]]; then
  bundle="${CATALOG_BUNDLE:-$KO_DOCKER_REPO/catalog:latest}"
  files=()
  for f in task/*/*/*.yaml stepaction/*/*/*.yaml; do
    # <kind>/<name>/<version>/<name>.yaml only: not samples/ or tests/.
    if [[ "$(basename "$f")" == "$(basename "$(dirname "$(dirname "$f")")").yaml" ]]; then
      files+=(-f "$f")
    fi
  done
  t0="$(now_ms)"
  catalog="$(mktemp)"
  ko resolve --base-import-paths --platform="$platforms" "${files[@]}" >"$catalog"
  ref="$(go run ./hack/catalog-bundle --ref "$bundle" --key "$CATALOG_KEY" <"$catalog")" || { rm -f "$catalog"; exit 1; }
  rm -f "$catalog"
  echo "hack/release.sh: catalog bundle $ref ($(( ${#files[@]} / 2 )) resources, signed; $(( $(now_ms) - t0 )) ms)" >&2
  # stdout holds the release YAML when RELEASE_YAML=-.
  [[ "$out" == - ]] || echo "$ref"
fi
