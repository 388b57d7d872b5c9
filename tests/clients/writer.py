"""Inserts documents with unique ids for a while and reports what happened, as JSON.

usage: writer.py URI SECONDS PREFIX
Prints one line: {"acked": N, "errors": [...], "ids": first/last}. Exits 0 even when
writes failed: the calling test decides what is acceptable.
"""
import json
import sys
import time

from pymongo import MongoClient

uri, seconds, prefix = sys.argv[1], float(sys.argv[2]), sys.argv[3]
client = MongoClient(uri, appName="writer-pymongo", retryWrites=True, serverSelectionTimeoutMS=30000)
coll = client.failover.load
acked, errors, i = 0, [], 0
deadline = time.monotonic() + seconds
while time.monotonic() < deadline:
    try:
        coll.insert_one({"_id": f"{prefix}-{i}"})
        acked += 1
    except Exception as e:  # every failure is reported, none hidden
        errors.append(f"{type(e).__name__}: {e}"[:300])
    i += 1
print(json.dumps({"acked": acked, "attempts": i, "errors": errors}))
