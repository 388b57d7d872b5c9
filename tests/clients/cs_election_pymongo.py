#!/usr/bin/env python3
"""Three change streams through an election, with pymongo 4 (tests/change_stream_election.rs).

usage: cs_election_pymongo.py URI DB COLL COUNT SECONDS

Opens three change streams on DB.COLL, then reads each one in its own thread until it
has delivered the insert of {i: COUNT - 1} or SECONDS have passed. The test writes
i = 0 .. COUNT-1 in order and kills and steps down primaries meanwhile; pymongo must
resume each stream through mongoplex by itself.

Prints one JSON object per line, for the test to follow while it runs:
  {"ready": true}                  the three streams are open (their aggregates answered)
  {"seen": [n0, n1, n2]}           inserts delivered so far, per stream (when it changes)
  {"error": "..."}                 a stream raised; it stops reading
  {"report": {...}}                last: every stream's i values in delivery order, the
                                   errors, the aggregates sent and the getMores that failed
Exits 0 whatever the streams did: the test decides.
"""

import json
import sys
import threading
import time

import pymongo
from pymongo import monitoring

STREAMS = 3


class Commands(monitoring.CommandListener):
    """Counts aggregates (first opens plus resumes) and keeps every failed getMore."""

    def __init__(self):
        self.lock = threading.Lock()
        self.aggregates = 0
        self.get_more_failures = []

    def started(self, event):
        if event.command_name == "aggregate":
            with self.lock:
                self.aggregates += 1

    def succeeded(self, event):
        pass

    def failed(self, event):
        if event.command_name == "getMore":
            failure = event.failure if isinstance(event.failure, dict) else {}
            what = f"code {failure.get('code')} labels {failure.get('errorLabels', [])}"
            with self.lock:
                self.get_more_failures.append(what)


def emit(obj):
    print(json.dumps(obj), flush=True)


def read(stream, seen, errors, last, deadline):
    while time.monotonic() < deadline:
        try:
            change = stream.try_next()
        except Exception as exc:  # a stream that gives up is the finding, not a crash
            errors.append(f"{type(exc).__name__}: {exc}"[:400])
            emit({"error": errors[-1]})
            return
        if change is None or change.get("operationType") != "insert":
            continue
        i = change["fullDocument"]["i"]
        seen.append(i)
        if i == last:
            return
    errors.append(f"deadline: {len(seen)} events, none with i == {last}")


def main():
    uri, db, coll_name, count, seconds = sys.argv[1:6]
    last, deadline = int(count) - 1, time.monotonic() + float(seconds)
    commands = Commands()
    client = pymongo.MongoClient(
        uri, appName="cs-election-pymongo", serverSelectionTimeoutMS=20000, event_listeners=[commands]
    )
    coll = client[db][coll_name]
    streams = [coll.watch(max_await_time_ms=500) for _ in range(STREAMS)]
    emit({"ready": True})
    seen = [[] for _ in range(STREAMS)]
    errors = [[] for _ in range(STREAMS)]
    threads = [
        threading.Thread(target=read, args=(streams[k], seen[k], errors[k], last, deadline), daemon=True)
        for k in range(STREAMS)
    ]
    for t in threads:
        t.start()
    shown = None
    while any(t.is_alive() for t in threads):
        counts = [len(s) for s in seen]
        if counts != shown:
            emit({"seen": counts})
            shown = counts
        time.sleep(0.05)
    for s in streams:
        try:
            s.close()
        except Exception:
            pass
    emit(
        {
            "report": {
                "streams": seen,
                "errors": [f"stream {k}: {e}" for k in range(STREAMS) for e in errors[k]],
                "aggregates": commands.aggregates,
                "get_more_failures": commands.get_more_failures,
            }
        }
    )
    client.close()


if __name__ == "__main__":
    main()
