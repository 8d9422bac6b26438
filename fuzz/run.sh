#!/usr/bin/env bash
# Builds and runs the fuzz targets with the nightly toolchain, without
# needing cargo-fuzz installed: the same sanitizer-coverage flags cargo-fuzz
# passes, no AddressSanitizer (see README.md), one `cargo build` for all
# targets.
#
#   fuzz/run.sh build                 build every target
#   fuzz/run.sh smoke                 every target for FUZZ_SECONDS (default 10) each,
#                                     two at a time; fails on any crash, leak or timeout
#   fuzz/run.sh run TARGET [SECONDS] [libFuzzer flags...]
#                                     one target (until stopped without SECONDS)
#   fuzz/run.sh repro TARGET FILE     run one input (a crash artifact) again
#   fuzz/run.sh list                  the target names
#
# Generated corpora go to fuzz/corpus/TARGET and crashes to
# fuzz/artifacts/TARGET (both git-ignored); the committed seeds in
# fuzz/seeds/TARGET are read, never written.
set -euo pipefail
cd "$(dirname "$0")"

toolchain=${FUZZ_TOOLCHAIN:-nightly}
triple=$(rustc +"$toolchain" -vV | sed -n 's/^host: //p')
# cargo honours CARGO_TARGET_DIR (relative to this folder, as cargo reads it).
bin_dir=${CARGO_TARGET_DIR:-target}/$triple/release
# Limits for every run: a slow input (-timeout, seconds), memory
# (-rss_limit_mb, and -malloc_limit_mb for one allocation), and at most
# this many bytes of input.
limits=(-timeout="${FUZZ_TIMEOUT:-10}" -rss_limit_mb="${FUZZ_RSS_MB:-1024}" -max_len="${FUZZ_MAX_LEN:-16384}")

targets() {
  sed -n 's/^name = "\([a-z0-9_]*\)"$/\1/p' Cargo.toml | grep -v '^connector-identity-fuzz$' || true
}

build() {
  RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module \
    -Cllvm-args=-sanitizer-coverage-level=4 \
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
    -Cllvm-args=-sanitizer-coverage-pc-table \
    -Cllvm-args=-sanitizer-coverage-trace-compares \
    ${RUSTFLAGS:-}" \
    cargo +"$toolchain" build --locked --release --target "$triple" --bins
}

run_one() {
  local target=$1 seconds=$2
  shift 2
  mkdir -p "corpus/$target" "artifacts/$target" "seeds/$target"
  local time_flag=()
  [ -n "$seconds" ] && time_flag=(-max_total_time="$seconds")
  "$bin_dir/$target" "corpus/$target" "seeds/$target" "${limits[@]}" "${time_flag[@]}" \
    -artifact_prefix="artifacts/$target/" -print_final_stats=1 "$@"
}

case "${1:-}" in
  list) targets ;;
  repro)
    [ $# -eq 3 ] || { echo "usage: fuzz/run.sh repro TARGET FILE" >&2; exit 2; }
    build
    "$bin_dir/$2" "${limits[@]}" "$3"
    ;;
  build) build ;;
  run)
    [ $# -ge 2 ] || { echo "usage: fuzz/run.sh run TARGET [SECONDS] [libFuzzer flags...]" >&2; exit 2; }
    target=$2 seconds=${3:-}
    shift $(( $# >= 3 ? 3 : 2 ))
    build
    run_one "$target" "$seconds" "$@"
    ;;
  smoke)
    build
    seconds=${FUZZ_SECONDS:-10}
    jobs=${FUZZ_JOBS:-2}
    rm -rf logs && mkdir -p logs
    # Each target's exit status goes to logs/TARGET.rc; at most $jobs at once.
    for target in $(targets); do
      while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
      ( set +e; run_one "$target" "$seconds" >"logs/$target.log" 2>&1; echo $? >"logs/$target.rc" ) &
    done
    wait
    failed=()
    for target in $(targets); do
      rc=$(cat "logs/$target.rc" 2>/dev/null || echo missing)
      execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "logs/$target.log" | tail -1 || true)
      cov=$(grep -oE 'cov: [0-9]+' "logs/$target.log" | tail -1 | sed "s/cov: //" || true)
      if [ "$rc" = 0 ]; then status=ok; else status="FAILED($rc)"; failed+=("$target"); fi
      printf '  %-16s %-10s %10s execs  cov %s\n' "$target" "$status" "${execs:-?}" "${cov:-?}"
    done
    total=$(targets | wc -l)
    echo "fuzz: $((total - ${#failed[@]})) passed, ${#failed[@]} failed"
    if [ "${#failed[@]}" -gt 0 ]; then
      for target in "${failed[@]}"; do
        echo "== fuzz target $target failed; the end of fuzz/logs/$target.log:"
        tail -30 "logs/$target.log"
      done
      echo "reproduce one with: fuzz/run.sh repro TARGET fuzz/artifacts/TARGET/FILE (see fuzz/README.md)"
      exit 1
    fi
    ;;
  *) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 2 ;;
esac
