#!/usr/bin/env bash
# See mongoplex work: starts a local upstream if none is listening on 127.0.0.1:27017
# (SecantusDB, a MongoDB-wire server, installed into .peers/demo-venv), then runs
# mongoplex in front of it on 127.0.0.1:27016 with the embedded defaults.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

UPSTREAM_PORT=27017
if ! (exec 3<>"/dev/tcp/127.0.0.1/$UPSTREAM_PORT") 2>/dev/null; then
    VENV=.peers/demo-venv
    if [[ ! -x "$VENV/bin/secantusd-py" ]]; then
        echo "demo: installing SecantusDB into $VENV" >&2
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install -q "secantusdb==0.7.0b3"
    fi
    echo "demo: starting SecantusDB on 127.0.0.1:$UPSTREAM_PORT" >&2
    "$VENV/bin/secantusd-py" --host 127.0.0.1 --port "$UPSTREAM_PORT" --storage-path :memory: \
        >.peers/demo-secantus.log 2>&1 &
    SECANTUS=$!
    trap 'kill $SECANTUS 2>/dev/null || true' EXIT
    for _ in $(seq 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/$UPSTREAM_PORT") 2>/dev/null && break
        sleep 0.2
    done
fi

cat >&2 <<MSG

  mongoplex is starting on 127.0.0.1:27016 in front of mongodb://127.0.0.1:$UPSTREAM_PORT/
  connect:  mongosh mongodb://127.0.0.1:27016/
            (or: npx mongosh mongodb://127.0.0.1:27016/)
  metrics:  curl -s http://127.0.0.1:9317/metrics | grep ^mongoplex_
  status:   curl -s http://127.0.0.1:9317/status
  stop:     Ctrl-C

MSG
cargo run --release --quiet -- "$@"
