"""A pymongo client of the soak (tests/soak.rs), through the proxy, for SECONDS.

usage: soak_client.py URI SECONDS writer|churn
  writer: one client, checked writes in sequence (see tests/soak_support/writes.rs:
          _id "<writer>-<seq>", even seq insert {n: 1}, odd seq upsert $inc n), 10 ms apart.
  churn:  connect, two checked writes, a find with batchSize 5 read for 7 documents and
          closed (killCursors), disconnect; again every 300 ms.
Retryable writes as pymongo defaults. Prints one JSON line: writer, attempts, errors
[[seq, message]], cursor_reads, cursor_errors, clients. Exits 0 even when operations
failed: the test decides what is acceptable.
"""
import json
import sys
import time

from pymongo import MongoClient

uri, seconds, mode = sys.argv[1], float(sys.argv[2]), sys.argv[3]
name = "pymongo" if mode == "writer" else "churn-py"
report = {"writer": name, "attempts": 0, "errors": [], "cursor_reads": 0, "cursor_errors": [], "clients": 0}


def write(coll):
    seq = report["attempts"]
    _id = f"{name}-{seq}"
    try:
        if seq % 2 == 0:
            coll.insert_one({"_id": _id, "w": name, "seq": seq, "n": 1})
        else:
            coll.update_one({"_id": _id}, {"$inc": {"n": 1}, "$set": {"w": name, "seq": seq}}, upsert=True)
    except Exception as e:  # every failure is reported, none hidden
        report["errors"].append([seq, f"{type(e).__name__}: {e}"[:300]])
    report["attempts"] += 1


def partial_read(db):
    try:
        cursor = db.docs.find({}).batch_size(5)
        for _ in range(7):
            if next(cursor, None) is None:
                break
            report["cursor_reads"] += 1
        cursor.close()
    except Exception as e:
        report["cursor_errors"].append(f"{type(e).__name__}: {e}"[:300])


def new_client():
    report["clients"] += 1
    return MongoClient(uri, serverSelectionTimeoutMS=30000)


deadline = time.monotonic() + seconds
if mode == "writer":
    client = new_client()
    while time.monotonic() < deadline:
        write(client.soak.writes)
        time.sleep(0.01)
    client.close()
else:
    while time.monotonic() < deadline:
        client = new_client()
        write(client.soak.writes)
        write(client.soak.writes)
        partial_read(client.soak)
        client.close()
        time.sleep(0.3)
print(json.dumps(report))
