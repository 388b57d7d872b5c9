#!/usr/bin/env python3
"""CRUD with Debian's pymongo 3.11, whose handshake is the legacy OP_QUERY isMaster.

Usage: $(cat .peers/legacy-python) legacy_pymongo3.py MONGODB_URI

The interpreter must be the one that sees Debian's python3-pymongo (written to
.peers/legacy-python by tests/peers/install.sh), not a venv. Exits non-zero with a
message naming the first mismatch; prints one summary line on success.
"""

import os
import sys
import uuid

import pymongo
from pymongo import monitoring


class Handshakes(monitoring.ServerHeartbeatListener):
    """Counts successful isMaster heartbeats, the monitor's own OP_QUERY handshakes."""

    def __init__(self):
        self.ok = 0

    def started(self, event):
        pass

    def succeeded(self, event):
        self.ok += 1

    def failed(self, event):
        pass


def check(cond, what):
    if not cond:
        sys.exit("legacy_pymongo3: FAILED: %s" % what)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: legacy_pymongo3.py MONGODB_URI")
    check(pymongo.version_tuple[0] == 3, "expected pymongo 3.x, got %s" % pymongo.version)
    beats = Handshakes()
    client = pymongo.MongoClient(sys.argv[1], event_listeners=[beats],
                                 serverSelectionTimeoutMS=10000, appname="legacy_pymongo3")
    name = "mp_legacy_py3_%d_%s" % (os.getpid(), uuid.uuid4().hex[:8])
    coll = client[name].items
    try:
        # The first command forces server selection, so the isMaster handshake has succeeded.
        ismaster = client.admin.command("isMaster")
        check(ismaster.get("ismaster") is True, "isMaster reply: %r" % ismaster)
        check(beats.ok >= 1, "no successful isMaster heartbeat")

        res = coll.insert_many([{"i": i, "grp": i % 4} for i in range(200)])
        check(len(res.inserted_ids) == 200, "insert_many inserted %d" % len(res.inserted_ids))
        coll.insert_one({"_id": "single", "v": 1})

        check(coll.find_one({"_id": "single"}) == {"_id": "single", "v": 1}, "find_one(single)")
        got = [d["i"] for d in coll.find({"i": {"$exists": True}}, batch_size=25).sort("i", 1)]
        check(got == list(range(200)), "find returned %d docs, not 0..199 in order" % len(got))
        check(coll.count_documents({"grp": 1}) == 50, "count_documents(grp=1) != 50")

        res = coll.update_many({"grp": 0}, {"$set": {"zero": True}})
        check(res.matched_count == 50 and res.modified_count == 50,
              "update_many matched %d modified %d" % (res.matched_count, res.modified_count))
        res = coll.update_one({"_id": "single"}, {"$inc": {"v": 41}})
        check(res.modified_count == 1, "update_one modified %d" % res.modified_count)
        check(coll.find_one({"_id": "single"})["v"] == 42, "update_one result not visible")

        res = coll.delete_many({"zero": True})
        check(res.deleted_count == 50, "delete_many deleted %d" % res.deleted_count)
        res = coll.delete_one({"_id": "single"})
        check(res.deleted_count == 1, "delete_one deleted %d" % res.deleted_count)
        check(coll.count_documents({}) == 150, "count after deletes != 150")
    finally:
        client.drop_database(name)
        client.close()
    print("legacy_pymongo3: OK pymongo %s, db %s, %d isMaster heartbeats"
          % (pymongo.version, name, beats.ok))


if __name__ == "__main__":
    main()
