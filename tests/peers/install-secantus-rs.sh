#!/usr/bin/env bash
# Build SecantusDB's Rust server (secantusd-rs) into a cache directory, once.
#
# Used by benchmarks only; tests use the Python server from tests/peers/install.sh.
# The build takes ~6 minutes on 2 cores and ~600 MB of target dir, so the result is
# cached outside the repository and this script is a no-op when the binary exists.
#
#   MONGOPLEX_SECANTUS_RS_DIR  install root (default: $HOME/.cache/mongoplex/secantus-rs)
#                              the binary ends up at $MONGOPLEX_SECANTUS_RS_DIR/bin/secantusd-rs
#
# SecantusDB is GPL-2.0-only: it is only ever run as a separate process, never linked.
set -euo pipefail

SECANTUS_RS_VERSION="0.5.3-beta.196"
ROOT="${MONGOPLEX_SECANTUS_RS_DIR:-$HOME/.cache/mongoplex/secantus-rs}"
BIN="$ROOT/bin/secantusd-rs"

if [[ -x "$BIN" ]]; then
    echo "secantusd-rs: already installed at $BIN"
    exit 0
fi

# Build dependencies of the bundled WiredTiger.
missing=()
for pkg in cmake ninja-build swig; do
    if ! dpkg -s "$pkg" >/dev/null 2>&1; then
        missing+=("$pkg")
    fi
done
if ((${#missing[@]})); then
    echo "apt-get install: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

mkdir -p "$ROOT"
# A private target dir keeps the 600 MB build out of the repo and lets an interrupted
# build resume; it is removed after a successful install.
TARGET_DIR="$ROOT/target"
echo "building secantus-mdb $SECANTUS_RS_VERSION into $ROOT (takes several minutes)"
CARGO_PROFILE_RELEASE_LTO=false \
CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
CARGO_TARGET_DIR="$TARGET_DIR" \
    cargo install secantus-mdb \
        --version "$SECANTUS_RS_VERSION" \
        --ignore-rust-version \
        --locked \
        --root "$ROOT"

rm -rf "$TARGET_DIR"
echo "secantusd-rs: installed at $BIN"
