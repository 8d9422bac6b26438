#!/usr/bin/env bash
# The deployment rehearsal, longer than CI runs it (tests/tests/it/rehearsal.rs):
# the stack's own ECS configuration, rendered from the CloudFormation template,
# two replicas (ECS tasks or Lambda environments) on moto, the rotation
# function invoked as the RotationSchedule invokes it, and a connector polling
# the example control plane, for weeks of simulated time on one simulated
# clock. Prints one line per deployment: simulated days, rotations, key-set
# reads, connector polls, tokens issued, refusals, failures, real time.
#
# Usage: scripts/rehearsal.sh [WEEKS [DEPLOYMENT [PERIOD_DAYS [SEED]]]]
#   WEEKS        simulated weeks (default 3); the run lasts WEEKS * 7 + 1 days
#   DEPLOYMENT   ecs-kms-envelope, ecs-kms, lambda-kms (the template's
#                defaults) or all (default: all three, in parallel)
#   PERIOD_DAYS  the stack's RotationPeriodDays (default: the template's, 7)
#   SEED         the schedule's random hours and tokens (default 2024)
# e.g. scripts/rehearsal.sh 6 ecs-kms 1      six weeks on ECS, kms, a rotation a day
#
# Real time, for three weeks on a loaded 2-core machine: about 30 minutes
# for an ECS deployment (two replicas read the key set every 30 s: 126,720
# reads in 22 days), 8 to 18 for Lambda (its environments read it only when
# invoked: 13,714 reads).
# The short rehearsal (4 days, RotationPeriodDays = 1: three scheduled
# rotations) runs in cargo test; scripts/rehearsal.sh 1 all 1 runs a week of
# daily rotations.
# Needs what scripts/test.sh installs (.venv: moto, libfaketime and its
# thread-safe build in .venv/lib), or
# E2E_PYTHON and E2E_MOTO_SERVER naming them.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

weeks=${1:-3}
deployment=${2:-all}
period=${3:-}
seed=${4:-2024}
case "$deployment" in
  ecs-kms-envelope | ecs-kms | lambda-kms) filter=rehearsal_${deployment//-/_} ;;
  all) filter=rehearsal_ ;;
  *) echo "DEPLOYMENT must be ecs-kms-envelope, ecs-kms, lambda-kms or all, not $deployment" >&2; exit 2 ;;
esac
if ! [[ $weeks =~ ^[0-9]+$ ]] || [ "$weeks" -lt 1 ]; then
  echo "WEEKS must be a whole number of weeks, at least 1" >&2
  exit 2
fi
# The tools scripts/test.sh installs, unless E2E_PYTHON / E2E_MOTO_SERVER name others.
export E2E_PYTHON="${E2E_PYTHON:-$root/.venv/bin/python}"
export E2E_MOTO_SERVER="${E2E_MOTO_SERVER:-$root/.venv/bin/moto_server}"
if [ ! -x "$E2E_MOTO_SERVER" ] || [ ! -x "$E2E_PYTHON" ]; then
  echo "$E2E_MOTO_SERVER or $E2E_PYTHON is missing: run scripts/test.sh once (it installs the test tools)" >&2
  exit 2
fi
export REHEARSAL_DAYS=$((weeks * 7 + 1))
export REHEARSAL_PERIOD_DAYS=$period
export REHEARSAL_SEED=$seed
# `rehearsal_ecs_kms` alone would also match rehearsal_ecs_kms_envelope: --exact.
args=("$filter")
[ "$deployment" != all ] && args=(--exact "rehearsal::$filter")
cargo test --workspace --all-features --test it -- "${args[@]}" --include-ignored --nocapture 2>&1 \
  | grep --line-buffered -E '^rehearsal |^test |panicked|test result'
