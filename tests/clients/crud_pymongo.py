#!/usr/bin/env python3
"""CRUD workload with pymongo 4 that asserts every result.

Usage: crud_pymongo.py MONGODB_URI

Run with the peers venv (tests/peers/install.sh): .peers/venv/bin/python.
Exits non-zero with a message naming the first mismatch; prints one summary
line on success. Uses a fresh database per run and drops it at the end.
"""

import os
import sys
import time
import uuid

import pymongo
from pymongo import monitoring
from pymongo.errors import DuplicateKeyError
from pymongo.write_concern import WriteConcern

N_DOCS = 1000
BATCH = 50


class CommandLog(monitoring.CommandListener):
    """Records command names and replies so the script can assert what went on the wire."""

    def __init__(self):
        self.names = []
        self.replies = []

    def started(self, event):
        self.names.append(event.command_name)

    def succeeded(self, event):
        self.replies.append((event.command_name, event.reply))

    def failed(self, event):
        self.replies.append((event.command_name, {"failed": str(event.failure)}))

    def count(self, name):
        return sum(1 for n, _ in self.replies if n == name)


def check(cond, what):
    if not cond:
        sys.exit(f"crud_pymongo: FAILED: {what}")


def crud(db, log):
    coll = db.items
    res = coll.insert_many([{"i": i, "grp": i % 10, "tag": "t"} for i in range(N_DOCS)])
    check(len(res.inserted_ids) == N_DOCS, f"insert_many inserted {len(res.inserted_ids)}")

    before = log.count("getMore")
    seen = [d["i"] for d in coll.find({}, batch_size=BATCH).sort("i", 1)]
    check(seen == list(range(N_DOCS)), f"find returned {len(seen)} docs, not 0..{N_DOCS - 1} in order")
    get_mores = log.count("getMore") - before
    check(get_mores >= N_DOCS // BATCH - 1, f"find with batch_size {BATCH} sent only {get_mores} getMores")

    check(coll.count_documents({}) == N_DOCS, "count_documents({}) != 1000")
    check(coll.count_documents({"grp": 3}) == N_DOCS // 10, "count_documents(grp=3) != 100")

    res = coll.update_many({"grp": {"$lt": 5}}, {"$set": {"tag": "low"}, "$inc": {"i": 0}})
    check(res.matched_count == 500 and res.modified_count == 500,
          f"update_many matched {res.matched_count} modified {res.modified_count}")
    check(coll.count_documents({"tag": "low"}) == 500, "updated docs not visible")

    groups = {g["_id"]: g for g in coll.aggregate([
        {"$group": {"_id": "$grp", "n": {"$sum": 1}, "total": {"$sum": "$i"}}},
        {"$sort": {"_id": 1}},
    ])}
    check(sorted(groups) == list(range(10)), f"$group keys {sorted(groups)}")
    for g, doc in groups.items():
        want = sum(i for i in range(N_DOCS) if i % 10 == g)
        check(doc["n"] == 100 and doc["total"] == want, f"$group {g}: {doc}, want n=100 total={want}")

    res = coll.delete_many({"grp": 9})
    check(res.deleted_count == 100, f"delete_many deleted {res.deleted_count}")
    check(coll.count_documents({}) == 900, "count after delete_many != 900")


def unique_index(db):
    users = db.users
    users.create_index("email", unique=True, name="email_unique")
    check("email_unique" in users.index_information(), "unique index missing from listIndexes")
    users.insert_one({"email": "a@example.com"})
    try:
        users.insert_one({"email": "a@example.com"})
    except DuplicateKeyError as e:
        check(e.code == 11000, f"DuplicateKeyError code {e.code}")
    else:
        sys.exit("crud_pymongo: FAILED: duplicate insert succeeded on a unique index")
    check(users.count_documents({}) == 1, "duplicate left a second document")


def transactions(client, db, log):
    db.create_collection("txn")
    with client.start_session() as s:
        with s.start_transaction():
            db.txn.insert_one({"k": "committed"}, session=s)
            db.txn.update_one({"k": "committed"}, {"$set": {"v": 1}}, session=s)
            check(db.txn.count_documents({}, session=s) == 1, "own write invisible inside transaction")
        check(db.txn.find_one({"k": "committed"}, {"_id": 0}) == {"k": "committed", "v": 1},
              "committed transaction's document not visible")

        s.start_transaction()
        db.txn.insert_one({"k": "aborted"}, session=s)
        s.abort_transaction()
    check(db.txn.count_documents({"k": "aborted"}) == 0, "aborted transaction's document is visible")
    check(db.txn.count_documents({}) == 1, "transaction collection count != 1")
    check(log.count("commitTransaction") == 1 and log.count("abortTransaction") == 1,
          "commitTransaction/abortTransaction were not each sent once")


def killed_cursor(db, log):
    cursor = db.items.find({}, batch_size=10)
    first = next(cursor)
    check("i" in first, "abandoned cursor returned no document")
    cursor_id = cursor.cursor_id
    check(cursor_id, "cursor has no server id after first batch (no getMore needed?)")
    before = log.count("killCursors")
    cursor.close()
    kills = [r for n, r in log.replies[-5:] if n == "killCursors"]
    check(log.count("killCursors") == before + 1 and kills, "close() sent no killCursors")
    check(cursor_id in kills[-1].get("cursorsKilled", []), f"killCursors reply {kills[-1]}")


def unacknowledged(db):
    coll = db.get_collection("w0", write_concern=WriteConcern(w=0))
    res = coll.insert_one({"_id": "w0-doc"})
    check(not res.acknowledged, "w:0 insert reported acknowledged")
    deadline = time.monotonic() + 10
    while db.w0.find_one({"_id": "w0-doc"}) is None:
        check(time.monotonic() < deadline, "w:0 insert not visible after 10s")
        time.sleep(0.05)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: crud_pymongo.py MONGODB_URI")
    log = CommandLog()
    client = pymongo.MongoClient(sys.argv[1], event_listeners=[log],
                                 serverSelectionTimeoutMS=10000, appname="crud_pymongo")
    name = f"mp_crud_py_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    db = client[name]
    try:
        crud(db, log)
        unique_index(db)
        transactions(client, db, log)
        killed_cursor(db, log)
        unacknowledged(db)
    finally:
        client.drop_database(name)
        client.close()
    print(f"crud_pymongo: OK pymongo {pymongo.version}, db {name}, "
          f"{len(log.names)} commands ({log.count('getMore')} getMore, {log.count('killCursors')} killCursors)")


if __name__ == "__main__":
    main()
