#!/usr/bin/env bash
# The whole test suite, from a plain clone on a fresh machine.
#
# Installs what the tests need into git-ignored folders (first run only):
#   .venv/  moto_server (AWS emulator), PyJWT, cfn-lint, Authlib,
#           requests-oauth2client (a third-party token exchange client),
#           libfaketime (a shifted clock for the CLI and the rehearsal's
#           moto; its thread-safe build compiled into .venv/lib), cargo-lambda
#           (the Lambda Runtime API emulator)                       (PyPI)
#   .node/  jose, oidc-provider (a third-party issuer), openid-client (npm)
# then checks formatting and lints, runs every test of the workspace, and,
# when the nightly toolchain is installed, runs every fuzz target for
# FUZZ_SECONDS (default 10) each (fuzz/README.md).
# Test suites that need the AWS emulator start their own moto_server on a free
# loopback port and stop it when they finish.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
# A one-off build keeps no incremental state (gigabytes of disk, no gain).
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}

if ! .venv/bin/python -c 'import moto, jwt, cfnlint, authlib, requests, requests_oauth2client, libfaketime' 2>/dev/null \
  || [ ! -x .venv/bin/cargo-lambda ]; then
  echo "== installing Python test tools into .venv"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r scripts/requirements-test.txt
fi
# libfaketime's thread-safe build (PTHREAD_SINGLETHREADED_TIME), from the
# source the PyPI package vendors: the package ships only the default build,
# which re-reads a timestamp file into a buffer shared by every thread
# without a lock (a multi-threaded moto on a moving clock can parse it torn
# and exit). tests/src/tools.rs (faketime_library) loads this one.
if [ ! -f .venv/lib/libfaketimeMT.so.1 ]; then
  echo "== building libfaketimeMT into .venv/lib"
  faketime_src=$(.venv/bin/python -c 'import libfaketime, os; print(os.path.join(os.path.dirname(libfaketime.__file__), "vendor/libfaketime/src"))')
  make --silent -C "$faketime_src" libfaketimeMT.so.1 >/dev/null
  cp "$faketime_src/libfaketimeMT.so.1" .venv/lib/libfaketimeMT.so.1
fi
if [ ! -f .node/node_modules/jose/package.json ] || [ ! -f .node/node_modules/oidc-provider/package.json ] \
  || [ ! -f .node/node_modules/openid-client/package.json ]; then
  echo "== installing Node test tools into .node"
  mkdir -p .node
  cp scripts/package-test.json .node/package.json
  (cd .node && npm install --silent --no-audit --no-fund)
fi

export E2E_PYTHON="$root/.venv/bin/python"
export E2E_MOTO_SERVER="$root/.venv/bin/moto_server"
export E2E_CARGO_LAMBDA="$root/.venv/bin/cargo-lambda"
export E2E_NODE_MODULES="$root/.node/node_modules"

echo "== cfn-lint (every template; a warning fails unless the template justifies it)"
.venv/bin/cfn-lint deploy/cloudformation/*.yaml
echo "== fuzz/Cargo.lock up to date (the fuzz build below is --locked; fail now, not after the tests)"
cargo metadata --locked --format-version 1 --manifest-path fuzz/Cargo.toml >/dev/null
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --all-features -- -D warnings
echo "== cargo test"
test_start=$SECONDS
# The binaries and examples the e2e tests start, built first with the
# arguments tests/src/lib.rs (EXECUTABLES_BUILD_ARGS) asks for, so no test
# compiles or links while others run.
cargo build --workspace --all-features --bins --examples
cargo test --workspace --all-features "$@"
echo "cargo test: $((SECONDS - test_start)) s, build included"
echo "== fuzz targets (fuzz/README.md; FUZZ_SECONDS=${FUZZ_SECONDS:-10} each, two at a time)"
# Only an installed nightly: never let rustup download one here.
if command -v rustup >/dev/null && rustup toolchain list | grep -q '^nightly-'; then
  fuzz_start=$SECONDS
  fuzz/run.sh smoke
  echo "fuzz targets: $((SECONDS - fuzz_start)) s added to the test command, build included"
else
  echo "nightly toolchain not installed: fuzz targets NOT run (rustup toolchain install nightly to run them)"
fi
