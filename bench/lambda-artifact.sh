#!/usr/bin/env bash
# The Lambda artifact the stack uploads (bootstrap in a zip), built with the
# release profile as it is and with the settings that shrink it, side by
# side: bytes of the binary, of the zip, and the build time of each.
#
#   bench/lambda-artifact.sh            # every variant (each a release build: minutes)
#   CARGO_TARGET_DIR=... bench/lambda-artifact.sh
#
# Variants (CARGO_PROFILE_RELEASE_* overrides of [profile.release]):
#   release         as configured (line-table debug info)
#   strip           strip = "symbols"
#   strip+thin-lto  strip, lto = "thin"
#   strip+fat-lto   strip, lto = "fat", codegen-units = 1
set -euo pipefail
cd "$(dirname "$0")/.."
out=${CARGO_TARGET_DIR:-target}
results=bench/results/lambda-artifact-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$results"
build() {
  local name=$1; shift
  local start=$SECONDS
  env "$@" cargo build --release -q -p oidc-server --features lambda --bin bootstrap
  local took=$((SECONDS - start))
  mkdir -p "$results/$name"
  cp "$out/release/bootstrap" "$results/$name/bootstrap"
  (cd "$results/$name" && zip -q -9 -j bootstrap.zip bootstrap)
  printf '%-16s binary %10d B   zip %10d B   build %5d s\n' "$name" \
    "$(stat -c %s "$results/$name/bootstrap")" "$(stat -c %s "$results/$name/bootstrap.zip")" "$took" \
    | tee -a "$results/summary.txt"
}
build release
build strip CARGO_PROFILE_RELEASE_STRIP=symbols
build strip+thin-lto CARGO_PROFILE_RELEASE_STRIP=symbols CARGO_PROFILE_RELEASE_LTO=thin
build strip+fat-lto CARGO_PROFILE_RELEASE_STRIP=symbols CARGO_PROFILE_RELEASE_LTO=fat CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1
echo "results in $results"
