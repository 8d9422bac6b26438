#!/usr/bin/env bash
# Every benchmark of BENCHMARKS.md, side by side with its baseline, one after
# another on this machine, in release mode:
#
#   micro   oidc-core issue/verify vs bare ring and jsonwebtoken 11 (aws-lc-rs)
#           and 9 (ring); connector-client cached read vs a mutex baseline
#   http    POST /token (client_credentials, client_secret_basic, ES256 JWT)
#           on oidc-server vs node-oidc-provider and vs a minimal axum handler
#           (Basic check, claims JSON, one ring ES256 signature: the least a
#           token endpoint does), same wrk, same concurrency levels, runs
#           alternated, RSS and CPU time of each server sampled; oidc-server
#           twice: its text log (the embedded default) and JSON (`[log]
#           format = "json"`, as the deployment stacks log)
#   kms     KmsSigner vs a bare SDK Sign loop against moto_server, KMS calls per
#           token (the ignored e2e test kms_bench, in release)
#   replay  private_key_jwt logins/s with the in-memory replay store and with
#           the DynamoDB store against moto_server, DynamoDB calls per login
#           (the ignored e2e test replay_bench, in release)
#   exchange  token exchange (RFC 8693) logins/s of AWS-shaped ES384 upstream
#           tokens beside client_secret_basic and aws_iam through moto_server,
#           one server, one concurrency, in one run; upstream JWKS fetches per
#           10,000 exchange logins (the ignored e2e test exchange_bench, in
#           release)
#   dpop    POST /token tokens/s without and with a DPoP proof (ES256
#           proofs signed ahead), alternating rounds, one server (the
#           ignored e2e test dpop_bench, in release; issue 28)
#   rotation  one whole key-set rotation (four steps) against moto_server for
#           a kms-envelope and a kms set, KMS and Secrets Manager calls per
#           rotation, a replica's reads while polling (rotation_bench)
#   verify  verifications/s of the same tokens: oidc-core, jsonwebtoken 11 and
#           9, bare ring, PyJWT, npm jose
#   lambda  cold start of bootstrap under the Lambda Runtime API emulator
#           (cargo-lambda): init duration, process start to first token, AWS
#           calls at init, for a local key and a kms-envelope set on moto,
#           beside node-oidc-provider's start (the ignored e2e test
#           lambda_cold_start, on bootstrap as built for the stack: the
#           lambda profile); then the zip the stack uploads,
#           per build setting (bench/lambda-artifact.sh)
#
#   bench/run.sh [SECTION ...]        (default: micro http kms replay verify)
#
# Environment: BENCH_DURATION (s per HTTP run, default 10), BENCH_ROUNDS
# (alternated rounds per level, default 3), BENCH_LEVELS (default "1 16 64"),
# BENCH_VERIFY_SECONDS (per verifier, default 3).
#
# Installs what it needs when missing: wrk (apt-get), bench/node_modules
# (npm ci: oidc-provider, jose), .venv (PyJWT, moto; same as scripts/test.sh).
# Results go to bench/results/<timestamp>/ (git-ignored), linked as
# bench/results/latest; the summary table is printed at the end and written to
# summary.md there. Takes 15-25 minutes on two cores, builds included.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

sections=("$@")
[ ${#sections[@]} -gt 0 ] || sections=(micro http kms replay verify)
duration=${BENCH_DURATION:-10}
rounds=${BENCH_ROUNDS:-3}
read -r -a levels <<<"${BENCH_LEVELS:-1 16 64}"
verify_seconds=${BENCH_VERIFY_SECONDS:-3}
ours_port=${BENCH_OURS_PORT:-18080}
node_port=${BENCH_NODE_PORT:-18090}
minimal_port=${BENCH_MINIMAL_PORT:-18070}
json_port=${BENCH_JSON_PORT:-18081}

results=bench/results/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$results"
ln -sfn "$(basename "$results")" bench/results/latest
log() { printf '\n== %s [load %s]\n' "$*" "$(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$results/log.txt"; }

pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

want() { local s; for s in "${sections[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1; }

# ---------------------------------------------------------------- tools
if want http && ! command -v wrk >/dev/null; then
  echo "== installing wrk (apt-get)"
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq wrk
  else
    echo "wrk is missing: install it (apt-get install -y wrk)" >&2; exit 2
  fi
fi
if want http || want verify || want lambda; then
  node -e 'process.exit(+process.versions.node.split(".")[0] >= 18 ? 0 : 1)' 2>/dev/null ||
    { echo "node 18 or later is needed (node-oidc-provider 8, jose 6)" >&2; exit 2; }
  if [ ! -f bench/node_modules/oidc-provider/package.json ] || [ ! -f bench/node_modules/jose/package.json ]; then
    echo "== installing node-oidc-provider and jose into bench/node_modules"
    (cd bench && npm ci --silent --no-audit --no-fund)
  fi
fi
if (want kms || want replay || want exchange || want verify || want lambda) \
  && { ! .venv/bin/python -c 'import moto, jwt' 2>/dev/null || [ ! -x .venv/bin/cargo-lambda ]; }; then
  echo "== installing PyJWT, moto and cargo-lambda into .venv (as scripts/test.sh does)"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r scripts/requirements-test.txt
fi
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')

# ---------------------------------------------------------------- machine
{
  echo "date_utc=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo '+dirty')"
  echo "nproc=$(nproc)"
  echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "mem_total=$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
  echo "kernel=$(uname -sr)"
  echo "rustc=$(rustc -V)"
  echo "node=$(node -v 2>/dev/null || echo none)"
  echo "python=$(.venv/bin/python -V 2>/dev/null || python3 -V)"
  echo "wrk=$(wrk -v 2>&1 | head -1 || true)"
  echo "load_at_start=$(cut -d' ' -f1-3 /proc/loadavg)"
} > "$results/machine.txt"
cat "$results/machine.txt"

# ---------------------------------------------------------------- servers
secret=$(tr -d '\n' < keys-example/demo-connector.secret)
client=demo-connector
audience=http://127.0.0.1:9090   # the demo connector's default audience
oidc_server=$target_dir/release/oidc-server

start_ours() {
  port_free "$ours_port"
  "$oidc_server" serve --listen "127.0.0.1:$ours_port" --issuer "http://127.0.0.1:$ours_port" >/dev/null 2>&1 &
  ours_pid=$!; pids+=("$ours_pid")
  wait_up "http://127.0.0.1:$ours_port/healthz" "$ours_pid"
}
# The same server logging JSON lines, as the deployment stacks configure it
# (its metrics listener moved off the first one's).
start_json() {
  port_free "$json_port"
  OIDC_SERVER__LOG__FORMAT=json OIDC_SERVER__METRICS__LISTEN=127.0.0.1:9177 \
    "$oidc_server" serve --listen "127.0.0.1:$json_port" --issuer "http://127.0.0.1:$json_port" >/dev/null 2>&1 &
  json_pid=$!; pids+=("$json_pid")
  wait_up "http://127.0.0.1:$json_port/healthz" "$json_pid"
}
start_minimal() {
  port_free "$minimal_port"
  "$target_dir/release/examples/minimal_token_endpoint" "127.0.0.1:$minimal_port" >/dev/null 2>&1 &
  minimal_pid=$!; pids+=("$minimal_pid")
  for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$minimal_port/" && return 0
    kill -0 "$minimal_pid" 2>/dev/null || { echo "the minimal handler exited" >&2; exit 1; }
    sleep 0.1
  done
  echo "the minimal handler did not come up" >&2; exit 1
}
start_node() {
  port_free "$node_port"
  NODE_ENV=production node bench/node-provider.mjs "$node_port" "$client" "$secret" "$audience" \
    >"$results/node-provider.log" 2>&1 &
  node_pid=$!; pids+=("$node_pid")
  wait_up "http://127.0.0.1:$node_port/.well-known/openid-configuration" "$node_pid"
}
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
port_free() {
  if curl -s -o /dev/null "http://127.0.0.1:$1/"; then
    echo "port $1 is already in use: stop what listens there or set BENCH_OURS_PORT/BENCH_JSON_PORT/BENCH_NODE_PORT/BENCH_MINIMAL_PORT" >&2
    exit 1
  fi
}
wait_up() { # url pid
  for _ in $(seq 100); do
    kill -0 "$2" 2>/dev/null || { echo "the server for $1 exited" >&2; exit 1; }
    curl -sf "$1" >/dev/null && return 0
    sleep 0.1
  done
  echo "server at $1 did not come up" >&2; exit 1
}
# One token by the benchmark's exact request: prints the access token.
fetch_token() {
  curl -sf -u "$client:$secret" -d grant_type=client_credentials -d scope=actions:read "$1/token" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}
# Checks that a token is an ES256 at+jwt for the audience, and prints its header.
check_token() {
  python3 - "$1" "$2" <<'PY'
import base64, json, sys
token, audience = sys.argv[1:3]
part = lambda s: json.loads(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))
header, claims = part(token.split(".")[0]), part(token.split(".")[1])
assert header["alg"] == "ES256" and header["typ"] == "at+jwt", header
assert claims["aud"] == audience and claims["sub"] == "demo-connector", claims
print(json.dumps(header), len(token), "bytes")
PY
}

jose_check='
import { createRemoteJWKSet, jwtVerify } from "jose";
const [token, issuer, audience] = process.argv.slice(1);
const discovery = await (await fetch(issuer + "/.well-known/openid-configuration")).json();
const jwks = createRemoteJWKSet(new URL(discovery.jwks_uri));
const { protectedHeader } = await jwtVerify(token, jwks, { issuer, audience, typ: "at+jwt", algorithms: ["ES256"] });
console.log("  jose verified it against " + discovery.jwks_uri + ": alg " + protectedHeader.alg);
'

# ---------------------------------------------------------------- micro
if want micro; then
  log "micro: cargo bench -p oidc-core --bench tokens"
  marker=$results/.micro-start; touch "$marker"
  cargo bench -p oidc-core --bench tokens 2>&1 | tee "$results/micro-tokens.txt" | grep -E '^(issue|verify)/|time:' || true
  log "micro: cargo bench -p connector-client --bench token"
  cargo bench -p connector-client --bench token 2>&1 | tee "$results/micro-client.txt" | grep -E '^token_read|time:' || true
  # Median estimates of this run only (target/criterion also keeps older runs).
  find "$target_dir/criterion" -path '*/new/estimates.json' -newer "$marker" |
    python3 -c '
import json, sys
out = {}
for path in sys.stdin.read().split():
    parts = path.split("/")
    out[parts[-4] + "/" + parts[-3]] = json.load(open(path))["median"]["point_estimate"]
json.dump(out, sys.stdout, indent=1, sort_keys=True)' > "$results/micro.json"
fi

# ---------------------------------------------------------------- http
if want http; then
  log "http: building oidc-server and the minimal handler (release)"
  cargo build --release -q -p oidc-server
  cargo build --release -q -p oidc-server --example minimal_token_endpoint
  start_ours
  start_json
  start_node
  start_minimal
  # Each answers the benchmark's request with an ES256 JWT access token that
  # jose verifies against the server's own JWKS (from its discovery document).
  port_of() { case $1 in ours) echo "$ours_port";; json) echo "$json_port";; node) echo "$node_port";; minimal) echo "$minimal_port";; esac; }
  pid_of() { case $1 in ours) echo "$ours_pid";; json) echo "$json_pid";; node) echo "$node_pid";; minimal) echo "$minimal_pid";; esac; }
  token=$(fetch_token "http://127.0.0.1:$minimal_port")
  echo "minimal token: $(check_token "$token" "$audience")" | tee -a "$results/log.txt"
  for who in ours json node; do
    port=$(port_of $who)
    token=$(fetch_token "http://127.0.0.1:$port")
    echo "$who token: $(check_token "$token" "$audience")" | tee -a "$results/log.txt"
    (cd bench && node --input-type=module -e "$jose_check" "$token" "http://127.0.0.1:$port" "$audience") |
      tee -a "$results/log.txt"
  done

  auth=$(printf '%s:%s' "$client" "$secret" | base64 -w0)
  script=$results/token.lua
  cat > "$script" <<LUA
wrk.method = "POST"
wrk.body = "grant_type=client_credentials&scope=actions%3Aread"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic $auth"
done = function(summary, latency, requests)
  io.write(string.format("RESULT rps=%.1f p50_ms=%.3f p99_ms=%.3f errors=%d non2xx=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, summary.errors.connect + summary.errors.read +
    summary.errors.write + summary.errors.timeout, summary.errors.status))
end
LUA
  ticks=$(getconf CLK_TCK)
  cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
  rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
  # One wrk run against one server: appends a CSV line.
  load() { # who pid port concurrency round
    local who=$1 pid=$2 port=$3 c=$4 round=$5 threads out line cpu0 cpu1 peak=0 rss
    threads=$(( c < 2 ? 1 : 2 ))
    cpu0=$(cpu_ticks "$pid")
    wrk -t"$threads" -c"$c" -d"${duration}s" -s "$script" "http://127.0.0.1:$port/token" > "$results/wrk.out" &
    local wrk_pid=$!
    while kill -0 "$wrk_pid" 2>/dev/null; do
      rss=$(rss_kb "$pid"); [ "$rss" -gt "$peak" ] && peak=$rss
      sleep 1
    done
    wait "$wrk_pid"
    cpu1=$(cpu_ticks "$pid")
    line=$(grep RESULT "$results/wrk.out"); line=${line#RESULT }
    local rps p50_ms p99_ms errors non2xx
    eval "$line"
    [ "${rps%.*}" -gt 0 ] || { echo "$who served nothing at concurrency $c" >&2; exit 1; }
    local cpu_us
    cpu_us=$(python3 -c "print(round(($cpu1 - $cpu0) / $ticks * 1e6 / ($rps * $duration), 1))")
    echo "$who,$c,$round,$rps,$p50_ms,$p99_ms,$((errors + non2xx)),$(( peak / 1024 )),$cpu_us" | tee -a "$results/http.csv"
  }
  echo "server,concurrency,round,rps,p50_ms,p99_ms,errors,rss_peak_mb,cpu_us_per_req" | tee "$results/http.csv"
  log "http: warm-up (3 s each, not counted)"
  for who in ours json node minimal; do
    wrk -t2 -c16 -d3s -s "$script" "http://127.0.0.1:$(port_of $who)/token" >/dev/null
  done
  log "http: ${rounds} alternated rounds of ${duration} s at concurrency ${levels[*]}"
  for c in "${levels[@]}"; do
    for round in $(seq "$rounds"); do
      for who in ours json node minimal; do
        load "$who" "$(pid_of $who)" "$(port_of $who)" "$c" "$round"
      done
    done
  done
  echo "idle_rss_after_mb ours=$(( $(rss_kb "$ours_pid") / 1024 )) json=$(( $(rss_kb "$json_pid") / 1024 )) node=$(( $(rss_kb "$node_pid") / 1024 )) minimal=$(( $(rss_kb "$minimal_pid") / 1024 ))" | tee -a "$results/log.txt"
  stop "$ours_pid"; stop "$json_pid"; stop "$node_pid"; stop "$minimal_pid"
fi

# ---------------------------------------------------------------- kms
if want kms; then
  log "kms: cargo test --release -p e2e --test it kms_bench -- --ignored --nocapture"
  for round in $(seq "$rounds"); do
    E2E_MOTO_SERVER=$root/.venv/bin/moto_server E2E_PYTHON=$root/.venv/bin/python \
      cargo test --release -q -p e2e --test it kms_bench -- --ignored --nocapture --test-threads 1 \
      2>&1 | tee -a "$results/kms.txt" | grep -E 'bare SDK|KmsSigner|kms-envelope|concurrency|test result'
  done
fi

# ---------------------------------------------------------------- replay
if want replay; then
  log "replay: cargo test --release -p e2e --test it replay_bench -- --ignored --nocapture"
  for round in $(seq "$rounds"); do
    E2E_MOTO_SERVER=$root/.venv/bin/moto_server E2E_PYTHON=$root/.venv/bin/python \
      cargo test --release -q -p e2e --test it replay_bench -- --ignored --nocapture --test-threads 1 \
      2>&1 | tee -a "$results/replay.txt" | grep -E 'store|concurrency|test result'
  done
fi

# ---------------------------------------------------------------- exchange
if want exchange; then
  log "exchange: cargo test --release -p e2e --test it exchange_bench -- --ignored --nocapture"
  for round in $(seq "$rounds"); do
    E2E_MOTO_SERVER=$root/.venv/bin/moto_server E2E_PYTHON=$root/.venv/bin/python \
      cargo test --release -q -p e2e --test it exchange_bench -- --ignored --nocapture --test-threads 1 \
      2>&1 | tee -a "$results/exchange.txt" | grep -E 'logins|concurrency|upstream|test result'
  done
fi

# ---------------------------------------------------------------- dpop
if want dpop; then
  log "dpop: cargo test --release -p e2e --all-features --test it dpop_bench -- --ignored --nocapture"
  cargo test --release -q -p e2e --all-features --test it dpop_bench -- --ignored --nocapture --test-threads 1 \
    2>&1 | tee -a "$results/dpop.txt" | grep -E 'round|mean|concurrency|test result'
fi

# ---------------------------------------------------------------- rotation
if want rotation; then
  log "rotation: cargo test --release -p e2e --test it rotation_bench -- --ignored --nocapture"
  for round in $(seq "$rounds"); do
    E2E_MOTO_SERVER=$root/.venv/bin/moto_server E2E_PYTHON=$root/.venv/bin/python \
      cargo test --release -q -p e2e --test it rotation_bench -- --ignored --nocapture --test-threads 1 \
      2>&1 | tee -a "$results/rotation.txt" | grep -E 'rotation|replica poll|test result'
  done
fi

# ---------------------------------------------------------------- lambda
if want lambda; then
  # The artifact the stack ships (docs/deploy.md: the lambda profile) under
  # the test harness.
  log "lambda: cold start of bootstrap built with --profile lambda (lambda_cold_start, ignored e2e test)"
  cargo build --profile lambda -q -p oidc-server --features lambda --bin bootstrap
  E2E_BOOTSTRAP=$target_dir/lambda/bootstrap \
    E2E_MOTO_SERVER=$root/.venv/bin/moto_server E2E_PYTHON=$root/.venv/bin/python \
    E2E_CARGO_LAMBDA=$root/.venv/bin/cargo-lambda E2E_NODE_MODULES=$root/bench/node_modules \
    cargo test -q --workspace --all-features --test it lambda_cold_start -- --ignored --nocapture --test-threads 1 \
    2>&1 | tee -a "$results/lambda.txt" | grep -vE '^$|^running|^test .* ignored'
  log "lambda: the zip per build setting (bench/lambda-artifact.sh)"
  bench/lambda-artifact.sh 2>&1 | tee -a "$results/lambda.txt"
fi

# ---------------------------------------------------------------- verify
if want verify; then
  log "verify: 200 tokens from oidc-server, then each verifier for ${verify_seconds} s"
  # Built before the tokens are fetched, so none expires (300 s) while compiling.
  cargo build --release -q -p oidc-server
  cargo bench -q -p oidc-core --bench verify_compare --no-run 2>/dev/null
  tokens_dir=$results/tokens; mkdir -p "$tokens_dir"
  start_ours
  for _ in $(seq 200); do fetch_token "http://127.0.0.1:$ours_port"; done > "$tokens_dir/tokens.txt"
  curl -sf "http://127.0.0.1:$ours_port/.well-known/jwks.json" > "$tokens_dir/jwks.json"
  stop "$ours_pid"
  printf '{"issuer": "http://127.0.0.1:%s", "audience": "%s", "seconds": %s}\n' \
    "$ours_port" "$audience" "$verify_seconds" > "$tokens_dir/meta.json"
  {
    BENCH_TOKENS_DIR=$root/$tokens_dir cargo bench -q -p oidc-core --bench verify_compare 2>&1 | grep -v '^$'
    .venv/bin/python bench/verify_pyjwt.py "$tokens_dir"
    node bench/verify_jose.mjs "$tokens_dir"
  } | tee "$results/verify.txt"
fi

# ---------------------------------------------------------------- summary
log "summary"
python3 bench/summarize.py "$results" | tee "$results/summary.md"
