#!/usr/bin/env bash
# Resident memory and CPU time of the idle `connector-token agent` over a few
# refresh cycles, side by side with the naive alternative: a shell loop that
# calls the `get-token` example every half token lifetime (the agent's own
# cadence for short tokens) and writes the token with printf and mv.
#
#   bench/connector-token.sh            (BENCH_TTL=20 BENCH_CYCLES=6 by default)
#
# Both run against the same oidc-server (its embedded development default,
# tokens of BENCH_TTL seconds), in release mode, one after the other, for the
# same window of BENCH_CYCLES x BENCH_TTL/2 seconds starting after the first
# token. Sampled once a second from /proc:
#   - VmRSS (with RssAnon/RssFile) and VmHWM of the agent and of the loop's
#     bash; get-token's peak RSS from GNU time (%M) over 3 runs;
#   - CPU time of the agent and of bash from /proc/PID/task/*/schedstat (ns,
#     every thread), of each loop refresh (get-token, mv) from bash's `time`
#     (getrusage, 1 ms); utime+stime(+cutime+cstime) of /proc/PID/stat too,
#     in 10 ms ticks. Totals, per refresh, and in the seconds with no refresh
#     (the idle cost).
# Results: bench/results/connector-token-<timestamp>/summary.md (git-ignored),
# also printed. Takes about 2.5 minutes once built.
set -euo pipefail
cd "$(dirname "$0")/.."

ttl=${BENCH_TTL:-20}
cycles=${BENCH_CYCLES:-6}
port=${BENCH_TOKEN_PORT:-18180}
interval=$((ttl / 2))
window=$((cycles * interval))
[ "$interval" -ge 1 ] || { echo "BENCH_TTL must be at least 2" >&2; exit 2; }
command -v /usr/bin/time >/dev/null || { echo "GNU time is needed (apt-get install -y time)" >&2; exit 2; }

results=bench/results/connector-token-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$results"
work=$(mktemp -d)
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== building (release)"
cargo build --release --quiet -p oidc-server --bin oidc-server \
  -p connector-client --bin connector-token --example get-token
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
bin=$target_dir/release
tick=$(getconf CLK_TCK)

echo "== oidc-server on 127.0.0.1:$port, tokens of $ttl s"
if curl -s -o /dev/null "http://127.0.0.1:$port/"; then
  echo "port $port is in use: set BENCH_TOKEN_PORT" >&2; exit 1
fi
OIDC_SERVER__TOKENS__DEFAULT_TTL_SECS=$ttl "$bin/oidc-server" serve \
  --listen "127.0.0.1:$port" --issuer "http://127.0.0.1:$port" >"$results/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$port/healthz" >/dev/null || { echo "the server did not come up" >&2; exit 1; }

export CONNECTOR_TOKEN_URL=http://127.0.0.1:$port/token
export CONNECTOR_CLIENT_ID=demo-connector
export CONNECTOR_CLIENT_SECRET_FILE=$PWD/keys-example/demo-connector.secret
unset RUST_LOG

# One sample of a process: "rss_kb hwm_kb anon_kb file_kb own_ticks children_ticks
# tid:ns,tid:ns,..." (VmRSS, VmHWM, RssAnon, RssFile from status; utime+stime
# and cutime+cstime from stat; each thread's CPU time in ns from schedstat).
sample() {
  local status stat threads="" t ns
  status=$(cat "/proc/$1/status") || return 1
  stat=$(sed 's/^.*) //' "/proc/$1/stat") || return 1
  read -r -a f <<<"$stat" # f[0] is field 3 (state): utime is f[11], stime f[12], cutime f[13], cstime f[14]
  for t in /proc/"$1"/task/*; do
    read -r ns _ <"$t/schedstat" 2>/dev/null && threads+="${t##*/}:$ns,"
  done
  echo "$(awk '/^(VmRSS|VmHWM|RssAnon|RssFile):/ {printf "%s ", $2}' <<<"$status")$((f[11] + f[12])) $((f[13] + f[14])) ${threads%,}"
}

# measure NAME PID COUNTER: samples PID once a second for the window; COUNTER
# prints how many refreshes have happened. Writes NAME.samples (one line per
# second: t, the sample, refreshes).
measure() {
  local name=$1 pid=$2 counter=$3 t s
  : >"$results/$name.samples"
  for t in $(seq 0 "$window"); do
    s=$(sample "$pid") || { echo "$name exited" >&2; exit 1; }
    echo "$t $s $($counter)" >>"$results/$name.samples"
    [ "$t" = "$window" ] || sleep 1
  done
}

# ---------------------------------------------------------------- the agent
echo "== connector-token agent, ${window} s after the first token"
mkdir -p "$work/agent"
"$bin/connector-token" agent --out "$work/agent/token" 2>"$results/agent.log" &
agent=$!; pids+=("$agent")
for _ in $(seq 200); do [ -s "$work/agent/token" ] && break; sleep 0.05; done
[ -s "$work/agent/token" ] || { echo "the agent wrote no token" >&2; cat "$results/agent.log" >&2; exit 1; }
agent_writes() { grep -c 'token file written' "$results/agent.log" || true; }
measure agent "$agent" agent_writes
kill -TERM "$agent"; wait "$agent" || true

# ---------------------------------------------------------------- the shell loop
echo "== get-token's peak resident memory (GNU time, 3 runs)"
mkdir -p "$work/loop"
for _ in 1 2 3; do
  /usr/bin/time -f %M -a -o "$results/get-token-rss.log" "$bin/examples/get-token" >/dev/null
done

echo "== shell loop calling get-token every $interval s, ${window} s after the first token"
: >"$work/loop/calls"
# What a hand-written sidecar does: call, cut the token out, write, rename.
# bash's `time` records the CPU time of each refresh (get-token, mv) from
# getrusage, to the millisecond, in cpu.log.
bash -c '
  TIMEFORMAT="%3U %3S"
  while :; do
    { time {
        out=$("$2" 2>>"$1/errors") &&
        token=${out#*\"access_token\":\"} && token=${token%%\"*} &&
        printf %s "$token" >"$1/token.tmp" && mv "$1/token.tmp" "$1/token"
      }; } 2>>"$1/cpu.log" || sleep 1
    echo >>"$1/calls"
    sleep "$3"
  done' loop "$work/loop" "$bin/examples/get-token" "$interval" &
loop=$!; pids+=("$loop")
for _ in $(seq 200); do [ -s "$work/loop/token" ] && break; sleep 0.05; done
[ -s "$work/loop/token" ] || { echo "the loop wrote no token" >&2; cat "$work/loop/errors" >&2; exit 1; }
loop_calls() { wc -l <"$work/loop/calls"; }
measure loop "$loop" loop_calls
kill "$loop"; wait "$loop" 2>/dev/null || true
cp "$work/loop/cpu.log" "$results/loop-cpu.log"

# ---------------------------------------------------------------- summary
python3 - "$results" "$tick" "$window" "$ttl" <<'PY' | tee "$results/summary.md"
import sys
results, tick, window, ttl = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])

def load(name):
    rows = []
    for line in open(f"{results}/{name}.samples"):
        t, rss, hwm, anon, file, own, children, threads, refreshes = line.split()
        # Each thread's CPU so far; a thread that has exited keeps its last value.
        ns = {tid: int(v) for tid, v in (x.split(":") for x in threads.split(","))}
        rows.append(dict(rss=int(rss), hwm=int(hwm), anon=int(anon), file=int(file),
                         ticks=int(own) + int(children), ns=ns, refreshes=int(refreshes)))
    seen = {}
    for r in rows:
        seen.update(r["ns"])
        r["thread_ns"] = sum(seen.values())
    first, last = rows[0], rows[-1]
    # Idle seconds: no refresh in them nor in the seconds either side (a
    # refresh's work can start in the second before its count moves).
    steps = list(zip(rows, rows[1:]))
    moved = [b["refreshes"] != a["refreshes"] for a, b in steps]
    idle = [steps[i] for i in range(len(steps))
            if not any(moved[max(0, i - 1):i + 2])]
    return dict(
        last=last, rss_max=max(r["rss"] for r in rows),
        refreshes=last["refreshes"] - first["refreshes"],
        cpu_ticks_ms=(last["ticks"] - first["ticks"]) * 1000 / tick,
        cpu_ns_ms=(last["thread_ns"] - first["thread_ns"]) / 1e6,
        idle_seconds=len(idle),
        idle_ticks_ms=sum(b["ticks"] - a["ticks"] for a, b in idle) * 1000 / tick,
        idle_ns_ms=sum(b["thread_ns"] - a["thread_ns"] for a, b in idle) / 1e6,
    )

agent, loop = load("agent"), load("loop")
peaks = [int(l) for l in open(f"{results}/get-token-rss.log") if l.strip().isdigit()]
# The loop's refreshes in the window: calls number first+1 .. last (cpu.log has one line per call).
calls = [sum(map(float, l.split())) * 1000 for l in open(f"{results}/loop-cpu.log") if l.strip()]
rows = [line.split() for line in open(f"{results}/loop.samples")]
in_window = calls[int(rows[0][-1]):int(rows[-1][-1])]
loop_refresh_ms = sum(in_window)
mib = lambda kb: f"{kb / 1024:.1f} MiB"
per = lambda total, r: f"{total / r['refreshes']:.1f} ms" if r["refreshes"] else "-"
a, l = agent["last"], loop["last"]
print(f"Tokens of {ttl} s, a window of {window} s after the first token, sampled once a second.\n")
print("| | connector-token agent | shell loop calling get-token |")
print("|---|---|---|")
print(f"| refreshes in the window | {agent['refreshes']} | {loop['refreshes']} |")
print(f"| resident (VmRSS) at the end | {mib(a['rss'])} (anon {mib(a['anon'])}, file {mib(a['file'])}) | {mib(l['rss'])} (bash between calls; anon {mib(l['anon'])}) |")
print(f"| largest VmRSS sampled | {mib(agent['rss_max'])} | {mib(loop['rss_max'])} (bash) |")
print(f"| peak resident (VmHWM) | {mib(a['hwm'])} | {mib(l['hwm'])} bash, and {mib(max(peaks))} for each get-token run (largest of {len(peaks)}, GNU time) |")
total_loop = loop_refresh_ms + loop["cpu_ns_ms"]
print(f"| CPU time in the window | {agent['cpu_ns_ms']:.1f} ms | {total_loop:.1f} ms ({loop_refresh_ms:.0f} ms in {len(in_window)} refreshes + {loop['cpu_ns_ms']:.1f} ms bash itself) |")
print(f"| CPU time per refresh | {per(agent['cpu_ns_ms'], agent)} | {loop_refresh_ms / len(in_window):.1f} ms (get-token, mv) |" if in_window else "| CPU time per refresh | - | - |")
idle = lambda r: f"{r['idle_ns_ms']:.2f} ms in {r['idle_seconds']} s ({r['idle_ns_ms'] * 1000 / max(r['idle_seconds'], 1):.1f} µs/s)"
print(f"| CPU time while idle (seconds with no refresh in or next to them) | {idle(agent)} | {idle(loop)} (bash) |")
print(f"| same window, utime+stime(+cutime+cstime) in 10 ms ticks | {agent['cpu_ticks_ms']:.0f} ms | {loop['cpu_ticks_ms']:.0f} ms |")
print(f"\nCPU time: the agent's and bash's from /proc/PID/task/*/schedstat (ns, every thread); each loop refresh from bash's `time` (getrusage of get-token and mv, 1 ms resolution). Per-second samples: {results}/agent.samples, loop.samples; per-refresh CPU of the loop: loop-cpu.log.")
PY
