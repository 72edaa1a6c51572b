#!/usr/bin/env bash
# Publish benchmark: a $SIZE_MIB MiB (default 1024) random artifact pushed to
# the local Distribution registry (hack/registry.sh), in the same run:
#   - stepseal publish, encrypted (policy: one EC P-256 platform): digest +
#     AES-256-CTR/HMAC + push + sign
#   - stepseal publish of the same file, not encrypted (encrypt: false rule)
#   - crane push of the same content as an OCI layout (no encryption)
#   - curl: one monolithic blob PUT of the file (what the registry ingests
#     at best over loopback; no client work)
#   - skopeo copy --encryption-key jwe:pub.pem of the same content from an
#     OCI layout (skopeo compresses the tar layer with gzip, then encrypts)
# Inputs (file, OCI layout) are made beforehand and not timed. Each command
# runs $RUNS times (default 1), best wall time kept, largest peak RSS
# (GNU time) kept. Then the client-side bound: pkg/crypt's benchmarks of
# AES-256-CTR, HMAC-SHA256, SHA-256 and the encrypt+digest pipeline.
# STEPSEAL=PATH times that binary instead of building one.
# The load average is printed: on a shared host other work lowers every figure.
set -euo pipefail
cd "$(dirname "$0")/../.."

SIZE_MIB=${SIZE_MIB:-1024}
RUNS=${RUNS:-1}
TIME=/usr/bin/time
for t in "$TIME" skopeo crane curl openssl docker-registry; do
	command -v "$t" >/dev/null || { echo "$t is needed: run hack/install-test-deps.sh (GNU time: apt-get install -y time)" >&2; exit 1; }
done
work=$(mktemp -d)
host=""
cleanup() {
	[ -n "$host" ] && hack/registry.sh stop "${host##*:}" || true
	rm -rf "$work"
}
trap cleanup EXIT

if [ -n "${STEPSEAL:-}" ]; then
	ss=$STEPSEAL # a stepseal binary built elsewhere (another ref, for a before/after)
	echo "== using $ss"
else
	echo "== building $work/stepseal"
	go build -o "$work/stepseal" ./images/stepseal
	ss="$work/stepseal"
fi
host=$(hack/registry.sh start)
echo "registry: $host (docker-registry $(docker-registry --version 2>/dev/null | awk '{print $NF}'), storage $(hack/registry.sh dir "${host##*:}"))"

"$ss" keys generate --type ecdsa --out "$work" --name signer >/dev/null
openssl ecparam -name prime256v1 -genkey -noout 2>/dev/null | openssl pkcs8 -topk8 -nocrypt -out "$work/platform.key"
openssl pkey -in "$work/platform.key" -pubout -out "$work/platform.pub"
cat >"$work/policy.yaml" <<'EOF'
apiVersion: stepseal.dev/v1alpha1
kind: PlatformPolicy
metadata: {name: bench}
spec:
  platforms:
  - name: prod-eu
    publicKey: platform.pub
  artifacts:
  - match: "*/bench/**"
    platforms: [prod-eu]
    encrypt: true
  - match: "*/plain/**"
    platforms: []
    encrypt: false
EOF

echo "== making the ${SIZE_MIB} MiB artifact and its OCI layout (not timed)"
mkdir -p "$work/dir"
head -c "$((SIZE_MIB * 1024 * 1024))" /dev/urandom >"$work/dir/artifact.bin"
bytes=$(stat -c %s "$work/dir/artifact.bin")
# The layout holds the same bytes as one uncompressed tar layer (stepseal's
# directory artifact): skopeo cannot encrypt a file artifact's own layer
# media type, it can a tar layer.
"$ss" publish "$work/dir" "$host/plain/prep:v1" --key "$work/signer.key" --platform-policy "$work/policy.yaml" --insecure >/dev/null
skopeo --insecure-policy copy -q --src-tls-verify=false "docker://$host/plain/prep:v1" "oci:$work/layout:v1"
blob_digest=$(sha256sum "$work/dir/artifact.bin" | cut -d' ' -f1)
cat "$work/dir/artifact.bin" >/dev/null # into the page cache

# best of RUNS: prints "wall_seconds maxrss_kb cpu_seconds".
best() {
	local best_s="" best_cpu="" best_kb=0 s u sy kb
	for ((r = 0; r < RUNS; r++)); do
		"$TIME" -f '%e %U %S %M' -o "$work/t" bash -c "$1 $r" >/dev/null 2>"$work/err" || { echo "failed: $*" >&2; cat "$work/err" >&2; exit 1; }
		read -r s u sy kb <"$work/t"
		if [ -z "$best_s" ] || awk -v a="$s" -v b="$best_s" 'BEGIN {exit !(a < b)}'; then
			best_s=$s
			best_cpu=$(awk -v u="$u" -v s="$sy" 'BEGIN {print u + s}')
		fi
		((kb > best_kb)) && best_kb=$kb
	done
	echo "$best_s $best_kb $best_cpu"
}

# Each command takes the run number last, so every run pushes to a fresh
# repository or tag (no blob the registry already has).
ours_enc() { "$ss" publish "$work/dir/artifact.bin" "$host/bench/ours:r$1-$tagid" --key "$work/signer.key" --platform-policy "$work/policy.yaml" --insecure; }
ours_plain() { "$ss" publish "$work/dir/artifact.bin" "$host/plain/ours$1-$tagid:v1" --key "$work/signer.key" --platform-policy "$work/policy.yaml" --insecure; }
crane_push() { crane push --insecure "$work/layout" "$host/plain/crane$1-$tagid:v1"; }
curl_put() {
	local loc
	loc=$(curl -fsS -X POST -D - -o /dev/null "http://$host/v2/plain/curl$1-$tagid/blobs/uploads/" | tr -d '\r' | awk -F': ' 'tolower($1)=="location" {print $2}')
	case "$loc" in http*) ;; *) loc="http://$host$loc" ;; esac
	case "$loc" in *\?*) loc="$loc&" ;; *) loc="$loc?" ;; esac
	curl -fsS -X PUT -H "Content-Type: application/octet-stream" -T "$work/dir/artifact.bin" "${loc}digest=sha256:$blob_digest" -o /dev/null
}
skopeo_enc() { skopeo --insecure-policy copy -q --dest-tls-verify=false --encryption-key "jwe:$work/platform.pub" "oci:$work/layout:v1" "docker://$host/bench/skopeo$1-$tagid:v1"; }

tagid=$$
export work host ss bytes blob_digest tagid
export -f ours_enc ours_plain crane_push curl_put skopeo_enc

echo "== load average before: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores"
printf '%-34s %8s %9s %10s %8s\n' "command ($SIZE_MIB MiB)" "seconds" "MB/s" "peak RSS" "CPU s"
declare -A secs
for c in ours_enc ours_plain crane_push curl_put skopeo_enc; do
	read -r s kb cpu < <(best "$c")
	secs[$c]=$s
	printf '%-34s %8.2f %9.1f %7d MiB %8.2f\n' "$c" "$s" "$(awk -v b="$bytes" -v s="$s" 'BEGIN {print b / s / 1e6}')" "$((kb / 1024))" "$cpu"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
awk -v o="${secs[ours_enc]}" -v k="${secs[skopeo_enc]}" 'BEGIN {printf "ratio: stepseal publish (encrypted) is %.2fx skopeo copy --encryption-key (goal >= 5x)\n", k / o}'
awk -v o="${secs[ours_enc]}" -v p="${secs[ours_plain]}" -v c="${secs[curl_put]}" 'BEGIN {printf "encrypted publish vs unencrypted: %.2fx the time; vs one raw blob PUT (registry ingest): %.2fx\n", o / p, o / c}'

echo "== client-side bound: go test -run '^\$' -bench . -benchtime 3x ./pkg/crypt"
go test -run '^$' -bench . -benchtime 3x ./pkg/crypt | tee "$work/bench"
awk '/BenchmarkEncryptPipeline/ {
	for (i = 1; i <= NF; i++) m[$(i + 1)] = $i
	cores = 1; bound = m["bound1core-MB/s"]
	for (k in m) if (k ~ /^bound[0-9]+core-MB\/s$/) { c = k; gsub(/[^0-9]/, "", c); if (c + 0 > cores) { cores = c + 0; bound = m[k] } }
	printf "pipeline %.0f MB/s = %.0f %% of the %s-core bound (%.0f MB/s; one core %.0f MB/s; AES-256-CTR %.0f, HMAC-SHA256 %.0f, SHA-256 %.0f MB/s)\n",
		m["pipeline-MB/s"], m["pct-of-bound"], cores, bound, m["bound1core-MB/s"], m["aes-MB/s"], m["hmac-MB/s"], m["sha256-MB/s"]
}' "$work/bench"
