#!/usr/bin/env bash
# The Lambda artifact the stack uploads (bootstrap in a zip), built with the
# release profile as it is and with the settings that shrink it, side by
# side: bytes of the binary, of the zip, and the build time of each.
#
#   bench/lambda-artifact.sh            # every variant (each a release build: minutes)
#   CARGO_TARGET_DIR=... bench/lambda-artifact.sh
#
# Variants:
#   release         [profile.release] (line-table debug info, for profiling)
#   lambda          [profile.lambda]: release without symbols or debug info,
#                   fat LTO in one codegen unit: what docs/deploy.md builds
#                   for the stack (lambda+fat-lto is the same build)
#   lambda-no-lto   lambda without LTO, 16 codegen units (the profile before
#                   LTO was measured)
#   lambda+thin-lto lambda with lto = "thin", 16 codegen units
# Each setting but the first rebuilds every crate (10-25 minutes on two
# cores); name the ones to build: bench/lambda-artifact.sh release lambda
set -euo pipefail
cd "$(dirname "$0")/.."
out=${CARGO_TARGET_DIR:-target}
results=bench/results/lambda-artifact-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$results"
build() {
  local name=$1 profile=$2; shift 2
  local start=$SECONDS
  env "$@" cargo build --profile "$profile" -q -p oidc-server --features lambda --bin bootstrap
  local took=$((SECONDS - start))
  mkdir -p "$results/$name"
  cp "$out/$profile/bootstrap" "$results/$name/bootstrap"
  (cd "$results/$name" && zip -q -9 -j bootstrap.zip bootstrap)
  printf '%-16s binary %10d B   zip %10d B   build %5d s\n' "$name" \
    "$(stat -c %s "$results/$name/bootstrap")" "$(stat -c %s "$results/$name/bootstrap.zip")" "$took" \
    | tee -a "$results/summary.txt"
}
variants=("$@")
[ ${#variants[@]} -gt 0 ] || variants=(release lambda-no-lto lambda+thin-lto lambda)
for variant in "${variants[@]}"; do
  case $variant in
    release) build release release ;;
    lambda | lambda+fat-lto) build "$variant" lambda ;;
    lambda-no-lto) build "$variant" lambda CARGO_PROFILE_LAMBDA_LTO=off CARGO_PROFILE_LAMBDA_CODEGEN_UNITS=16 ;;
    lambda+thin-lto) build "$variant" lambda CARGO_PROFILE_LAMBDA_LTO=thin CARGO_PROFILE_LAMBDA_CODEGEN_UNITS=16 ;;
    *) echo "unknown variant $variant (release, lambda, lambda-no-lto, lambda+thin-lto, lambda+fat-lto)" >&2; exit 2 ;;
  esac
done
echo "results in $results"
