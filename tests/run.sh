#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs every peer the tests use
# (tests/peers/install.sh: SecantusDB, pymongo 4, mockupdb, the Node driver, mongosh,
# Debian's pymongo 3.11, Prometheus), then runs every test.
#
#   MONGOPLEX_SPEC_TESTS  the MongoDB spec-test JSON root (default: ../shared/spec-tests)
#   MONGOPLEX_PEERS_DIR   where peers are installed (default: .peers)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash tests/peers/install.sh
export MONGOPLEX_SPEC_TESTS="${MONGOPLEX_SPEC_TESTS:-$(cd .. && pwd)/shared/spec-tests}"
if [[ ! -d "$MONGOPLEX_SPEC_TESTS" ]]; then
    echo "run.sh: WARNING: no spec tests at $MONGOPLEX_SPEC_TESTS; the conformance tests will skip" >&2
fi

if cargo nextest --version >/dev/null 2>&1; then
    # Each test starts its own SecantusDB; 4 at a time keeps 2 cores from thrashing.
    cargo nextest run --no-fail-fast --test-threads 4 "$@"
else
    cargo test --no-fail-fast "$@"
fi
