#!/usr/bin/env bash
# Load test of POST /token (client_credentials, client_secret_basic, local ES256
# key): throughput and latency percentiles at several concurrency levels, and
# the server's resident memory under load.
#
#   bench/token-load.sh [DURATION_SECS] [CONCURRENCY ...]
#
# Defaults: 10 s per level, levels 1 16 64. Needs wrk (apt-get install wrk).
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10}; shift || true
levels=("$@"); [ ${#levels[@]} -gt 0 ] || levels=(1 16 64)
port=${PORT:-18080}

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 2; }
cargo build --release -q -p oidc-server

secret=$(tr -d '\n' < keys-example/demo-connector.secret)
auth=$(printf 'demo-connector:%s' "$secret" | base64 -w0)
script=$(mktemp --suffix=.lua)
cat > "$script" <<LUA
wrk.method = "POST"
wrk.body = "grant_type=client_credentials"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic $auth"
done = function(summary, latency, requests)
  io.write(string.format("RESULT rps=%.0f p50_ms=%.3f p99_ms=%.3f errors=%d non2xx=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, summary.errors.connect + summary.errors.read +
    summary.errors.write + summary.errors.timeout, summary.errors.status))
end
LUA

./target/release/oidc-server serve --listen "127.0.0.1:$port" --issuer "http://127.0.0.1:$port" >/dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; rm -f "$script"' EXIT
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done

echo "concurrency,rps,p50_ms,p99_ms,errors,rss_mb"
for c in "${levels[@]}"; do
  threads=$(( c < 2 ? 1 : 2 ))
  out=$(wrk -t"$threads" -c"$c" -d"${duration}s" -s "$script" "http://127.0.0.1:$port/token" &
        sleep $(( duration / 2 )); grep VmRSS /proc/$server/status | awk '{printf "RSS %d\n", $2/1024}' >&2; wait)
  rss=$(grep VmRSS /proc/$server/status | awk '{print int($2/1024)}')
  line=$(grep RESULT <<<"$out")
  eval "${line#RESULT }"
  echo "$c,$rps,$p50_ms,$p99_ms,$((errors + non2xx)),$rss"
done
