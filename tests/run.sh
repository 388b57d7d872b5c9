#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs every peer the tests use
# (tests/peers/install.sh: SecantusDB, pymongo 4, mockupdb, the Node driver, mongosh,
# Debian's pymongo 3.11, Prometheus, pymongo's sdist), then runs every test: the Rust
# tests, and pymongo's own suite in three modes beside them (tests/driver_suite/run.py).
#
#   MONGOPLEX_SPEC_TESTS  the MongoDB spec-test JSON root (default: ../shared/spec-tests)
#   MONGOPLEX_PEERS_DIR   where peers are installed (default: .peers)
#   MONGOPLEX_DRIVER_SUITE=off  skip pymongo's suite (local use; says so loudly)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash tests/peers/install.sh
export MONGOPLEX_SPEC_TESTS="${MONGOPLEX_SPEC_TESTS:-$(cd .. && pwd)/shared/spec-tests}"
if [[ ! -d "$MONGOPLEX_SPEC_TESTS" ]]; then
    echo "run.sh: WARNING: no spec tests at $MONGOPLEX_SPEC_TESTS; the conformance tests will skip" >&2
fi

PEERS="${MONGOPLEX_PEERS_DIR:-$PWD/.peers}"
mkdir -p target

# pymongo's own suite (tests/driver_suite/run.py) runs beside the Rust tests: it spends
# most of its time waiting on the server, so the two share the cores well.
suite_pid=""
if [[ "${MONGOPLEX_DRIVER_SUITE:-on}" == "off" ]]; then
    echo "run.sh: WARNING: MONGOPLEX_DRIVER_SUITE=off: pymongo's suite is NOT run" >&2
else
    cargo build --bin mongoplex
    "$PEERS/venv/bin/python" tests/driver_suite/run.py \
        --pymongo-src "$PEERS/pymongo-src" --python "$PEERS/venv/bin/python" \
        >target/driver-suite.log 2>&1 &
    suite_pid=$!
fi

rust_rc=0
if cargo nextest --version >/dev/null 2>&1; then
    # Each test starts its own SecantusDB; 4 at a time keeps 2 cores from thrashing.
    cargo nextest run --no-fail-fast --test-threads 4 "$@" || rust_rc=$?
else
    cargo test --no-fail-fast "$@" || rust_rc=$?
fi

suite_rc=0
if [[ -n "$suite_pid" ]]; then
    wait "$suite_pid" || suite_rc=$?
    cat target/driver-suite.log
    echo "run.sh: pymongo's suite exited $suite_rc (logs and junit files: target/driver-suite/)"
fi
echo "run.sh: Rust tests exited $rust_rc"
if ((rust_rc != 0 || suite_rc != 0)); then
    exit 1
fi
