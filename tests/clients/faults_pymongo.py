#!/usr/bin/env python3
"""Fault scenarios with pymongo 4: SecantusDB fail points under mongoplex.

Usage: faults_pymongo.py PROXY_URI DIRECT_URI SCENARIO

SCENARIO is one of wce_inc, change_stream_blip, commit_blip, txn_wce_label,
txn_statement_blip.
Fail points (configureFailPoint failCommand, mode {times: 1}) are armed on
SecantusDB through DIRECT_URI; the operation under test goes through PROXY_URI.
Each scenario first runs against DIRECT_URI alone, to prove that the scenario
itself works with no proxy; a failure there is reported as such.

Run with the peers venv (tests/peers/install.sh): .peers/venv/bin/python.
Prints "faults_pymongo SCENARIO: OK" on success; exits non-zero with a message
naming the first mismatch otherwise.
"""

import sys
import time
import uuid

import pymongo
from pymongo import monitoring
from pymongo.errors import OperationFailure, PyMongoError, WriteConcernError

WCE_CODES = [10107, 13435, 10058, 11600, 91, 11602, 13436, 189]


class Failure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


class CommandLog(monitoring.CommandListener):
    """Records every reply (and failure) per command name, as pymongo received it."""

    def __init__(self):
        self.replies = []

    def started(self, event):
        pass

    def succeeded(self, event):
        self.replies.append((event.command_name, dict(event.reply)))

    def failed(self, event):
        # For a writeConcernError pymongo's failure document is the reply's
        # writeConcernError with the reply's top-level errorLabels copied in.
        failure = dict(event.failure) if isinstance(event.failure, dict) else {}
        self.replies.append((event.command_name, {"$failed": failure}))

    def of(self, name):
        return [r for n, r in self.replies if n == name]


def client(uri, **kw):
    opts = dict(serverSelectionTimeoutMS=5000, connectTimeoutMS=5000, socketTimeoutMS=15000)
    opts.update(kw)
    return pymongo.MongoClient(uri, **opts)


def arm(direct, data):
    direct.admin.command(
        {"configureFailPoint": "failCommand", "mode": {"times": 1}, "data": data}
    )


def disarm(direct):
    direct.admin.command({"configureFailPoint": "failCommand", "mode": "off"})


def fresh_db_name():
    return "faults_" + uuid.uuid4().hex[:12]


# ---------------------------------------------------------------- wce_inc


def wce_inc(target_uri, direct, label, via_proxy):
    """An update whose reply carries a writeConcernError was APPLIED: nobody may
    send it again without a txnNumber, and the client must see the error."""
    dbname = fresh_db_name()
    raw = direct[dbname]["c"]
    for retry_writes in (False, True):
        for code in WCE_CODES:
            # A fresh client per code: a state-change code (10107, 11602 ...) in a
            # writeConcernError marks the server Unknown in the client that saw it.
            c = client(target_uri, retryWrites=retry_writes)
            try:
                coll = c[dbname]["c"]
                what = f"{label}: code {code}, retryWrites={retry_writes}"
                raw.delete_many({})
                raw.insert_one({"_id": 1, "n": 0})
                arm(
                    direct,
                    {"failCommands": ["update"], "writeConcernError": {"code": code, "errmsg": "x"}},
                )
                saw_wce = False
                outcome = None
                try:
                    res = coll.update_one({"_id": 1}, {"$inc": {"n": 1}})
                    outcome = f"returned {res.raw_result!r}"
                    saw_wce = "writeConcernError" in (res.raw_result or {})
                except WriteConcernError as exc:
                    saw_wce = True
                    outcome = f"WriteConcernError {exc.code}: {exc.details!r}"
                except PyMongoError as exc:
                    outcome = f"{type(exc).__name__}: {exc!r}"
                    details = getattr(exc, "details", None) or {}
                    saw_wce = "writeConcernError" in details
                finally:
                    disarm(direct)
                doc = raw.find_one({"_id": 1})
                n = doc and doc.get("n")
                check(
                    n == 1,
                    f"{what}: n == {n!r} after one $inc (expected exactly 1; 2 means the "
                    f"update was sent twice); the client got: {outcome}",
                )
                check(
                    saw_wce,
                    f"{what}: the client never saw the writeConcernError; it got: {outcome}",
                )
            finally:
                c.close()
    direct.drop_database(dbname)


# ---------------------------------------------------------------- change_stream_blip


def change_stream_blip(target_uri, direct, label, via_proxy):
    """A getMore whose upstream connection drops: the stream resumes, and every
    event arrives exactly once, in order."""
    dbname = fresh_db_name()
    raw = direct[dbname]["c"]
    raw.insert_one({"_id": "seed"})  # the collection exists before the stream opens
    c = client(target_uri)
    try:
        coll = c[dbname]["c"]
        seen = []
        deadline = time.monotonic() + 30
        with coll.watch(max_await_time_ms=300) as stream:

            def read_until(count):
                while len(seen) < count:
                    check(
                        time.monotonic() < deadline,
                        f"{label}: only {len(seen)} of {count} events within 30 s: {seen}",
                    )
                    try:
                        ev = stream.try_next()
                    except PyMongoError as exc:
                        raise Failure(
                            f"{label}: the change stream raised after {len(seen)} events: "
                            f"{type(exc).__name__}: {exc!r}"
                        )
                    if ev is not None and ev.get("operationType") == "insert":
                        seen.append(ev["fullDocument"]["i"])

            for i in range(5):
                raw.insert_one({"i": i})
            read_until(2)
            arm(direct, {"failCommands": ["getMore"], "closeConnection": True})
            try:
                for i in range(5, 10):
                    raw.insert_one({"i": i})
                read_until(10)
                # A few more polls: a duplicate delivered late must be caught too.
                end = time.monotonic() + 1.0
                while time.monotonic() < end:
                    ev = stream.try_next()
                    if ev is not None and ev.get("operationType") == "insert":
                        seen.append(ev["fullDocument"]["i"])
            finally:
                disarm(direct)
        check(
            seen == list(range(10)),
            f"{label}: events were {seen}; expected each of 0..9 exactly once, in order",
        )
    finally:
        c.close()
    direct.drop_database(dbname)


# ---------------------------------------------------------------- commit_blip


def one_txn(c, coll, doc, label, what):
    started = time.monotonic()
    try:
        with c.start_session() as s:
            s.start_transaction()
            coll.insert_one(doc, session=s)
            s.commit_transaction()
    except PyMongoError as exc:
        labels = sorted(getattr(exc, "_error_labels", ()) or ())
        raise Failure(
            f"{label}: {what} failed after {time.monotonic() - started:.2f}s: "
            f"{type(exc).__name__}: {exc!r} labels={labels}"
        )
    took = time.monotonic() - started
    check(took < 5.0, f"{label}: {what} took {took:.2f}s (limit 5 s)")


def commit_blip(target_uri, direct, label, via_proxy):
    """The connection drops under commitTransaction: pymongo's one commit retry
    succeeds, the doc is stored once, and the next transactions commit at once."""
    dbname = fresh_db_name()
    raw = direct[dbname]["c"]
    raw.insert_one({"_id": "seed"})  # no implicit collection creation in a transaction
    c = client(target_uri)
    try:
        coll = c[dbname]["c"]
        started = time.monotonic()
        try:
            with c.start_session() as s:
                s.start_transaction()
                coll.insert_one({"_id": "blip"}, session=s)
                arm(direct, {"failCommands": ["commitTransaction"], "closeConnection": True})
                try:
                    s.commit_transaction()
                finally:
                    disarm(direct)
        except PyMongoError as exc:
            labels = sorted(getattr(exc, "_error_labels", ()) or ())
            raise Failure(
                f"{label}: the commit after a dropped connection failed after "
                f"{time.monotonic() - started:.2f}s: {type(exc).__name__}: {exc!r} "
                f"labels={labels}"
            )
        took = time.monotonic() - started
        check(took < 5.0, f"{label}: the commit after a dropped connection took {took:.2f}s")
        stored = raw.count_documents({"_id": "blip"})
        check(stored == 1, f"{label}: the committed doc is stored {stored} times")
        for k in range(3):
            one_txn(c, coll, {"_id": f"after-{k}"}, label, f"transaction {k + 1} after the blip")
        stored = raw.count_documents({"_id": {"$regex": "^after-"}})
        check(stored == 3, f"{label}: {stored} of the 3 later transactions are stored")
    finally:
        c.close()
    direct.drop_database(dbname)


# ---------------------------------------------------------------- txn_wce_label


def txn_wce_label(target_uri, direct, label, via_proxy):
    """A commitTransaction reply with a writeConcernError (code 91) and no labels
    must reach the client without a TransientTransactionError label."""
    dbname = fresh_db_name()
    raw = direct[dbname]["c"]
    raw.insert_one({"_id": "seed"})
    log = CommandLog()
    c = client(target_uri, event_listeners=[log])
    try:
        coll = c[dbname]["c"]
        outcome = "commit returned normally"
        exc_labels = []
        with c.start_session() as s:
            s.start_transaction()
            coll.insert_one({"_id": "t"}, session=s)
            arm(
                direct,
                {
                    "failCommands": ["commitTransaction"],
                    "writeConcernError": {"code": 91, "errmsg": "shutdown"},
                },
            )
            try:
                s.commit_transaction()
            except OperationFailure as exc:
                exc_labels = sorted(getattr(exc, "_error_labels", ()) or ())
                outcome = f"{type(exc).__name__} {exc.code}: {exc.details!r} labels={exc_labels}"
            except PyMongoError as exc:
                raise Failure(f"{label}: commit failed without a reply: {exc!r}")
            finally:
                disarm(direct)
        replies = log.of("commitTransaction")
        check(replies, f"{label}: no commitTransaction reply was recorded; {outcome}")
        first = replies[0]
        wce = first.get("writeConcernError") or first.get("$failed") or {}
        # Through mongoplex the member's state-change code reaches the driver as the
        # mongos routing code HostUnreachable (6), naming 91 in errmsg.
        check(
            wce.get("code") == 91 or (wce.get("code") == 6 and "(91)" in wce.get("errmsg", "")),
            f"{label}: the first commitTransaction reply has no writeConcernError 91: {first!r}",
        )
        for reply in replies:
            labels = list(reply.get("errorLabels", [])) + list(
                (reply.get("$failed") or {}).get("errorLabels", [])
            )
            check(
                "TransientTransactionError" not in labels,
                f"{label}: a commitTransaction reply carries TransientTransactionError, which "
                f"the server never sent (transactions spec: never on a writeConcernError): "
                f"{reply!r}",
            )
        check(
            "TransientTransactionError" not in exc_labels,
            f"{label}: the commit error carries TransientTransactionError: {outcome}",
        )
        stored = raw.count_documents({"_id": "t"})
        check(stored == 1, f"{label}: the committed doc is stored {stored} times; {outcome}")
    finally:
        c.close()
    direct.drop_database(dbname)


# ---------------------------------------------------------------- txn_statement_blip


def txn_statement_blip(target_uri, direct, label, via_proxy):
    """A statement's connection drops inside a transaction and the app commits anyway.

    Directly, the server never saw the statement and keeps the transaction: the commit
    succeeds with the first statement's document only (the scenario's baseline, which
    shows what the proxy must not let through). Through mongoplex, as through a mongos,
    the proxy's error aborts the transaction: the commit fails with NoSuchTransaction
    and nothing the transaction wrote is stored."""
    dbname = fresh_db_name()
    raw = direct[dbname]["c"]
    raw.insert_one({"_id": "seed"})
    c = client(target_uri, retryWrites=False)
    try:
        coll = c[dbname]["c"]
        with c.start_session() as s:
            s.start_transaction()
            coll.insert_one({"_id": "first"}, session=s)
            arm(direct, {"failCommands": ["insert"], "closeConnection": True})
            statement = "succeeded"
            try:
                coll.insert_one({"_id": "second"}, session=s)
            except PyMongoError as exc:
                labels = sorted(getattr(exc, "_error_labels", ()) or ())
                statement = f"{type(exc).__name__} labels={labels}"
                check(
                    "TransientTransactionError" in labels,
                    f"{label}: the failed statement lacks TransientTransactionError: {exc!r}",
                )
            finally:
                disarm(direct)
            check(statement != "succeeded", f"{label}: the second insert did not fail")
            commit = "committed"
            commit_code, commit_labels = None, []
            try:
                s.commit_transaction()
            except OperationFailure as exc:
                commit_code = exc.code
                commit_labels = sorted(getattr(exc, "_error_labels", ()) or ())
                commit = f"OperationFailure {exc.code} labels={commit_labels}"
            except PyMongoError as exc:
                commit = f"{type(exc).__name__}: {exc!r}"
        stored = sorted(d["_id"] for d in raw.find({"_id": {"$ne": "seed"}}))
        if via_proxy:
            check(
                commit_code == 251 and "TransientTransactionError" in commit_labels,
                f"{label}: after the proxy failed a statement, the commit must fail with "
                f"NoSuchTransaction (251) and TransientTransactionError, as through a "
                f"mongos; it got: {commit} (statement: {statement}); stored {stored}",
            )
            check(stored == [], f"{label}: the aborted transaction left {stored} stored")
        else:
            check(
                commit == "committed" and stored == ["first"],
                f"{label}: directly the server keeps the transaction; commit: {commit}, "
                f"stored {stored}",
            )
    finally:
        c.close()
    direct.drop_database(dbname)


SCENARIOS = {
    "wce_inc": wce_inc,
    "change_stream_blip": change_stream_blip,
    "commit_blip": commit_blip,
    "txn_wce_label": txn_wce_label,
    "txn_statement_blip": txn_statement_blip,
}


def main():
    if len(sys.argv) != 4 or sys.argv[3] not in SCENARIOS:
        sys.exit(f"usage: {sys.argv[0]} PROXY_URI DIRECT_URI {{{'|'.join(SCENARIOS)}}}")
    proxy_uri, direct_uri, name = sys.argv[1:]
    scenario = SCENARIOS[name]
    direct = client(direct_uri)
    try:
        try:
            scenario(direct_uri, direct, f"{name} DIRECT (no proxy)", False)
        except Failure as exc:
            sys.exit(f"faults_pymongo {name}: FAILED without the proxy, the scenario itself "
                     f"is broken: {exc}")
        print(f"faults_pymongo {name}: direct OK", flush=True)
        try:
            scenario(proxy_uri, direct, f"{name} through mongoplex", True)
        except Failure as exc:
            sys.exit(f"faults_pymongo {name}: FAILED: {exc}")
    finally:
        try:
            disarm(direct)
        except PyMongoError:
            pass
        direct.close()
    print(f"faults_pymongo {name}: OK", flush=True)


if __name__ == "__main__":
    main()
