#!/usr/bin/env bash
# The deployment rehearsal, longer than CI runs it (tests/tests/it/rehearsal.rs):
# the stack's own ECS configuration, rendered from the CloudFormation template,
# two replicas on moto, the rotation function invoked as the RotationSchedule
# invokes it, and a connector polling the example control plane, for weeks of
# simulated time on one simulated clock. Prints one line per signing mode:
# simulated days, rotations, replica polls, connector polls, tokens issued,
# refusals, failures, real time.
#
# Usage: scripts/rehearsal.sh [WEEKS [MODE [PERIOD_DAYS [SEED]]]]
#   WEEKS        simulated weeks (default 3); the run lasts WEEKS * 7 + 1 days
#   MODE         kms-envelope, kms or both (default both, in parallel)
#   PERIOD_DAYS  the stack's RotationPeriodDays (default: the template's, 7)
#   SEED         the schedule's random hours and tokens (default 2024)
# e.g. scripts/rehearsal.sh 6 kms 1      six weeks, kms mode, a rotation a day
#
# Real time: about 10 to 15 ms per replica poll (moto's GetSecretValue), so
# about 30 minutes for three weeks on a quiet 2-core machine. CI runs 4 days
# with RotationPeriodDays = 1 (three scheduled rotations) instead.
# Needs what scripts/test.sh installs (.venv: moto, libfaketime, cfn-lint).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

weeks=${1:-3}
mode=${2:-both}
period=${3:-}
seed=${4:-2024}
case "$mode" in
  kms-envelope) filter=rehearsal_kms_envelope ;;
  kms) filter=rehearsal_kms ;;
  both) filter=rehearsal_ ;;
  *) echo "MODE must be kms-envelope, kms or both, not $mode" >&2; exit 2 ;;
esac
if ! [[ $weeks =~ ^[0-9]+$ ]] || [ "$weeks" -lt 1 ]; then
  echo "WEEKS must be a whole number of weeks, at least 1" >&2
  exit 2
fi
if [ ! -x .venv/bin/moto_server ]; then
  echo ".venv is missing: run scripts/test.sh once (it installs the test tools)" >&2
  exit 2
fi

export E2E_PYTHON="$root/.venv/bin/python"
export E2E_MOTO_SERVER="$root/.venv/bin/moto_server"
export REHEARSAL_DAYS=$((weeks * 7 + 1))
export REHEARSAL_PERIOD_DAYS=$period
export REHEARSAL_SEED=$seed
# `rehearsal_kms` alone would also match rehearsal_kms_envelope: --exact.
exact=()
[ "$mode" != both ] && exact=(--exact "rehearsal::$filter")
cargo test --workspace --all-features --test it -- "${exact[@]:-$filter}" --nocapture 2>&1 \
  | grep --line-buffered -E '^rehearsal |^test |panicked|test result'
