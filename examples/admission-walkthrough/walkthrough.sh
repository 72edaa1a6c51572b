#!/usr/bin/env bash
# Usage: examples/admission-walkthrough/walkthrough.sh
#
# From source to a running, admitted Pod, and the refusals on the way:
#
#   1. build, test and package a Go service (examples/go-build), every step
#      signed and verified against the layout generated from its Pipeline;
#      the same pipeline with a tampered test step is refused
#   2. package the verified binary as an OCI image on a locally built base
#   3. a TUF trust root: team "apps" (developers alice and bob) may release
#      the apps images; the platform policy is released through it too
#   4. alice publishes the image encrypted to this cluster's platform,
#      signed, and releases its tag through TUF
#   5. verify: the build's links, the image's recipients, the admission
#      decision offline
#   6. deploy: stepseal's admission webhook checks the Pod; the node, which
#      holds the platform's key, decrypts and runs it
#   7. refused, each with stepseal's message: an unsigned image, an image
#      signed by a developer outside the team's delegation, an image this
#      platform may not decrypt, and alice's image after her key is revoked
#   8. bob re-signs the team's role and releases v2, which runs; alice's v1
#      stays refused
#
# Environment (test/realnode's TestRealNodeAdmissionWalkthrough sets them
# for the real test node):
#   KUBECONFIG  the cluster (admin)
#   REGISTRY    HOST:PORT of the registry the cluster pulls from (loopback:
#               plain HTTP)
#   BASE        the base image, by digest
#   NODE_KEYS   the node's decryption key directory (containerd's
#               ctd-decoder --decryption-keys-path)
#   NAMESPACE   the namespace to opt in (created if missing; default
#               admission-walkthrough)
#   WORK        working directory (default: a new temporary directory)
# Needs stepseal and stepseal-tekton, crane, kubectl, openssl, curl, python3, go.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
: "${KUBECONFIG:?}" "${REGISTRY:?}" "${BASE:?}" "${NODE_KEYS:?}"
export KUBECONFIG
NS="${NAMESPACE:-admission-walkthrough}"
W="${WORK:-$(mktemp -d)}"
mkdir -p "$W/keys" "$W/proposals"
insecure=()
[[ "$REGISTRY" == 127.0.0.1:* || "$REGISTRY" == localhost:* ]] && insecure=(--insecure)

say() { printf '\n## %s\n' "$*"; }
# run CMD...: show CMD on the transcript (fd 3: the script's stderr, so
# that neither $(run …) nor a redirection of CMD's output takes it), then
# run it.
exec 3>&2
run() {
  echo "\$ $*" >&3
  "$@"
}
# refused WANT CMD...: CMD must fail, and its output must say WANT.
refused() {
  local want="$1" out
  shift
  echo "\$ $*"
  if out="$("$@" 2>&1)"; then
    echo "$out"
    echo "walkthrough: FAILED: expected a refusal" >&2
    exit 1
  fi
  echo "$out"
  grep -qF -- "$want" <<<"$out" || { echo "walkthrough: FAILED: the refusal does not say: $want" >&2; exit 1; }
  echo "(refused, as expected)"
}
# after_refresh WANT CMD...: the webhook re-reads TUF every 2 s; wait (at
# most 30 s) until a server-side dry run of CMD (a kubectl command) says WANT.
after_refresh() {
  local want="$1" out
  shift
  for _ in $(seq 60); do
    out="$("$@" --dry-run=server 2>&1 || true)"
    grep -qF -- "$want" <<<"$out" && return 0
    sleep 0.5
  done
  echo "$out"
  echo "walkthrough: FAILED: 30 s after the TUF change, still not: $want" >&2
  exit 1
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
render() { sed -e "s#__REGISTRY__#$REGISTRY#g" -e "s#__NAMESPACE__#$NS#g" "$@"; }

pids=()
created_ns=""
cleanup() {
  local rc=$? p
  if ((rc)) && [[ -s "$W/admission-serve.log" ]]; then
    echo "--- the webhook's log ($W/admission-serve.log):" >&2
    tail -20 "$W/admission-serve.log" >&2
  fi
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -f "$NODE_KEYS/walkthrough-$NS.pem"
  kubectl delete mutatingwebhookconfiguration,validatingwebhookconfiguration "stepseal-walkthrough-$NS" --ignore-not-found >/dev/null 2>&1 || true
  if [[ -n "$created_ns" ]]; then kubectl delete namespace "$NS" --wait=false >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

# accept PROPOSAL... [--target-file P=F]: the publisher's gate, then publish.
accept() {
  run stepseal trust accept "$W/tuf" "$@" --online-key "$W/keys/online.key" >/dev/null
  run stepseal trust publish "$W/tuf" "$W/site" >/dev/null
}

say "0. Keys: TUF roles, the policy owner, developers alice, bob (team apps) and mallory (no team), platforms node and partner"
for k in root targets online owner alice bob mallory node partner; do
  stepseal keys generate --type ecdsa --out "$W/keys" --name "$k" >/dev/null
done
ls "$W/keys"

say "1. Build, test and package the Go service; every step signed and verified"
run stepseal run "$here/../go-build" --out "$W/build" -q
refused 'step "test.unit"' stepseal run "$here/../go-build-tampered" --out "$W/tampered" -q

say "2. Package the verified binary as an OCI image on the locally built base $BASE"
mkdir -p "$W/app" "$W/layer/app"
tar -xzf "$W/build/work/workspaces/dist/app.tar.gz" -C "$W/app"
cp "$W/app/hello" "$W/layer/app/hello"
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$W/layer" -cf "$W/layer.tar" .
staging="$REGISTRY/$NS/staging/hello:build"
{
  run crane append -b "$BASE" -f "$W/layer.tar" -t "$staging"
  run crane mutate --entrypoint /app/hello -t "$staging" "$staging"
  run crane pull --format=oci "$staging" "$W/image"
} >>"$W/crane.log" 2>&1

say "3. The trust root: team apps may release $REGISTRY/$NS/{apps,partner}/*; the platform policy is a TUF target"
run stepseal trust init "$W/tuf" --root-key "$W/keys/root.key" --targets-key "$W/keys/targets.key" \
  --online-key "$W/keys/online.key" >/dev/null
run stepseal trust delegate "$W/tuf" --role apps --path "oci/$REGISTRY/$NS/apps/*" --path "oci/$REGISTRY/$NS/partner/*" \
  --key "$W/keys/alice.pub" --key "$W/keys/bob.pub" --threshold 1 --sign-key "$W/keys/targets.key" --out "$W/proposals/apps.json"
accept "$W/proposals/apps.json"
run stepseal trust delegate "$W/tuf" --role platform --path policies/platforms.policy \
  --key "$W/keys/owner.pub" --sign-key "$W/keys/targets.key" --out "$W/proposals/platform.json"
accept "$W/proposals/platform.json"
render "$here/platform-policy.yaml" >"$W/platform-policy.yaml"
run stepseal policy sign "$W/platform-policy.yaml" --key "$W/keys/owner.key" --out "$W/platforms.policy"
run stepseal trust sign "$W/tuf" --role platform --path policies/platforms.policy --file "$W/platforms.policy" \
  --key "$W/keys/owner.key" --out "$W/proposals/policy.json"
accept "$W/proposals/policy.json" --target-file "policies/platforms.policy=$W/platforms.policy"
tuf_port="$(free_port)"
stepseal trust serve "$W/site" --addr "127.0.0.1:$tuf_port" >"$W/trust-serve.log" 2>&1 &
pids+=($!)
tuf_url="http://127.0.0.1:$tuf_port/metadata"
# What every --trust consumer takes (each also gets a cache directory of its own).
tflags=(--trust "$tuf_url" --trust-root "$W/site/metadata/1.root.json")
for _ in $(seq 50); do curl -fsS -o /dev/null "$tuf_url/timestamp.json" 2>/dev/null && break; sleep 0.1; done

# publish_as DEV REPO:TAG: DEV publishes the image (encrypted per the policy
# TUF vouches for, signed with DEV's key) and prints its digest reference.
publish_as() {
  run stepseal publish "$W/image" "$REGISTRY/$NS/$2" --key "$W/keys/$1.key" --platform-policy platforms \
    "${tflags[@]}" --trust-cache "$W/cache-publish-$1" "${insecure[@]}" -o json >"$W/publish-$1.json"
  sed -n 's/.*"digest": *"\([^"]*\)".*/\1/p' "$W/publish-$1.json" | head -1
}
# release DEV REPO:TAG: DEV signs the tag's release into team apps.
release() {
  run stepseal trust sign "$W/tuf" --role apps --image "$REGISTRY/$NS/$2" "${insecure[@]}" \
    --key "$W/keys/$1.key" --out "$W/proposals/release-$1.json"
  accept "$W/proposals/release-$1.json"
}

say "4. alice publishes the image encrypted to platform node, and releases apps/hello:v1"
app="$(publish_as alice apps/hello:v1)"
echo "published $app"
release alice apps/hello:v1

say "5. Verify: the build's links against its layout, who can decrypt the image, the admission decision"
run stepseal verify --layout "$W/build/root.layout" --layout-key "$W/build/keys/owner.pub" --links "$W/build/links" \
  --artifact "dist/app.tar.gz=$W/build/work/workspaces/dist/app.tar.gz"
run stepseal crypt recipients "$app" --platform-policy platforms "${tflags[@]}" --trust-cache "$W/cache-recipients" "${insecure[@]}"
render "$here/admission-policy.yaml" >"$W/admission-policy.yaml"
run stepseal admission check "$app" --policy "$W/admission-policy.yaml" --platform node --platform-policy platforms \
  "${tflags[@]}" --trust-cache "$W/cache-check" --pull-policy Always "${insecure[@]}"

say "6. Deploy: the webhook, the namespace opted in, the platform key on the node, the Pod"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=stepseal-admission \
  -addext subjectAltName=IP:127.0.0.1 -keyout "$W/tls.key" -out "$W/tls.crt" 2>/dev/null
hook_port="$(free_port)"
echo "\$ stepseal admission serve --addr 127.0.0.1:$hook_port --policy admission-policy.yaml --platform node --platform-policy platforms --trust … --trust-refresh 2s &"
stepseal admission serve --addr "127.0.0.1:$hook_port" --policy "$W/admission-policy.yaml" --platform node \
  --platform-policy platforms "${tflags[@]}" --trust-cache "$W/cache-serve" --trust-refresh 2s --tls-cert "$W/tls.crt" --tls-key "$W/tls.key" \
  "${insecure[@]}" >"$W/admission-serve.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -fsS -o /dev/null --cacert "$W/tls.crt" "https://127.0.0.1:$hook_port/healthz" 2>/dev/null && break; sleep 0.1; done
if ! kubectl get namespace "$NS" >/dev/null 2>&1; then
  run kubectl create namespace "$NS"
  created_ns=1
fi
run kubectl label namespace "$NS" stepseal.dev/admission=enforce --overwrite
sed -e "s#__URL__#https://127.0.0.1:$hook_port#g" -e "s#__CABUNDLE__#$(base64 -w0 <"$W/tls.crt")#g" \
  -e "s#__NAMESPACE__#$NS#g" "$here/webhooks.yaml" >"$W/webhooks.yaml"
run kubectl apply -f "$W/webhooks.yaml"
run install -m 0600 "$W/keys/node.key" "$NODE_KEYS/walkthrough-$NS.pem"
# The apiserver loads webhook configurations asynchronously: wait until a
# dry run of an image no rule covers is refused.
for _ in $(seq 100); do
  out="$(kubectl run probe -n "$NS" --image="$REGISTRY/uncovered@sha256:$(printf '0%.0s' $(seq 64))" --restart=Never --dry-run=server 2>&1 || true)"
  grep -q "stepseal: " <<<"$out" && break
  sleep 0.1
done
render "$here/pod.yaml" | run kubectl apply -n "$NS" -f -
run kubectl wait -n "$NS" pod/hello --for=jsonpath='{.status.phase}'=Succeeded --timeout=120s
run kubectl get pod hello -n "$NS" -o jsonpath='image {.spec.containers[0].image}{"\n"}ran   {.status.containerStatuses[0].imageID}{"\n"}'
[[ "$(kubectl get pod hello -n "$NS" -o jsonpath='{.status.containerStatuses[0].imageID}')" == "$app" ]] ||
  { echo "walkthrough: FAILED: the Pod did not run $app" >&2; exit 1; }

say "7a. Refused: an image nobody signed"
unsigned="$REGISTRY/$NS/apps/hello@$(crane digest "$staging")"
run crane copy "$staging" "$REGISTRY/$NS/apps/hello:unsigned" >>"$W/crane.log" 2>&1
refused "no signature found" kubectl run unsigned -n "$NS" --image="$unsigned" --image-pull-policy=Always --restart=Never

say "7b. Refused: mallory, who is not in team apps, publishes into its repository"
mallory="$(publish_as mallory apps/hello:mallory)"
refused "image $mallory (rule \"apps\")" kubectl run mallory -n "$NS" --image="$mallory" --image-pull-policy=Always --restart=Never

say "7c. Refused: an image encrypted for platform partner only"
partner="$(publish_as alice partner/hello:v1)"
release alice partner/hello:v1
after_refresh 'platform "node" is not a recipient' kubectl run partner -n "$NS" --image="$partner" --image-pull-policy=Always --restart=Never
refused 'platform "node" is not a recipient' kubectl run partner -n "$NS" --image="$partner" --image-pull-policy=Always --restart=Never

say "7d. Refused: alice's key is revoked; the webhook refreshes TUF (every 2 s here)"
run stepseal trust revoke "$W/tuf" --role apps --key "$W/keys/alice.pub" --reason "laptop stolen" \
  --sign-key "$W/keys/targets.key" --out "$W/proposals/revoke.json"
accept "$W/proposals/revoke.json"
after_refresh "revoked" kubectl run after-revocation -n "$NS" --image="$app" --image-pull-policy=Always --restart=Never
refused "revoked" kubectl run after-revocation -n "$NS" --image="$app" --image-pull-policy=Always --restart=Never

say "8. Recovery: bob re-signs the team's role and releases the service as v2; it runs, alice's v1 stays refused"
run stepseal trust sign "$W/tuf" --role apps --key "$W/keys/bob.key" --out "$W/proposals/resign.json"
accept "$W/proposals/resign.json"
v2="$(publish_as bob apps/hello:v2)"
echo "published $v2"
release bob apps/hello:v2
after_refresh "created (server dry run)" kubectl run hello-v2 -n "$NS" --image="$v2" --image-pull-policy=Always --restart=Never
run kubectl run hello-v2 -n "$NS" --image="$v2" --image-pull-policy=Always --restart=Never
run kubectl wait -n "$NS" pod/hello-v2 --for=jsonpath='{.status.phase}'=Succeeded --timeout=120s
refused "(rule \"apps\"): signature verification failed" kubectl run after-resign -n "$NS" --image="$app" --image-pull-policy=Always --restart=Never

say "Done: the image the pipeline built and verified ran, as v1 and (after alice's revocation) as bob's v2; five refusals, each with its reason"
