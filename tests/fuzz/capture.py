#!/usr/bin/env python3
"""Captures real driver traffic for the fuzz corpus.

Starts SecantusDB (the Python server), puts a byte-for-byte TCP relay in front of it,
runs real drivers through the relay, and writes every whole message the relay saw:

    OUT/<connection>-<sequence>-<c|s>.bin   c: client to server, s: server to client

The drivers are pymongo 4 (tests/clients/crud_pymongo.py, plus transactions, a change
stream, errors and an exhaust-style awaitable hello from this script), the Node driver
(tests/clients/crud_node.js) and Debian's pymongo 3.11 (tests/clients/legacy_pymongo3.py,
the legacy OP_QUERY handshake). Every client asks for compressors=zstd,zlib,snappy;
SecantusDB offers none, so no OP_COMPRESSED crosses the wire, and the decompress seeds
are made from these frames by the crate's own `wire::compress` (see seeds.rs).

Usage (peers from tests/peers/install.sh; MONGOPLEX_PEERS_DIR defaults to <repo>/.peers):

    $PEERS/venv/bin/python tests/fuzz/capture.py OUT
"""

import asyncio
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PEERS = os.environ.get("MONGOPLEX_PEERS_DIR", os.path.join(REPO, ".peers"))
CLIENTS = os.path.join(REPO, "tests", "clients")
OPTIONS = "directConnection=true&compressors=zstd,zlib,snappy&appname=fuzz-capture"


def start_secantus(tmp):
    """secantusd-py on an ephemeral port; returns the process and its port."""
    log_path = os.path.join(tmp, "secantusd.log")
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [os.path.join(PEERS, "venv", "bin", "secantusd-py"), "--host", "127.0.0.1",
         "--port", "0", "--storage-path", ":memory:", "--enable-test-commands"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=dict(os.environ, TMPDIR=tmp))
    deadline = time.time() + 20
    while time.time() < deadline:
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", open(log_path).read())
        if m:
            return proc, int(m.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    sys.exit("capture: SecantusDB did not start:\n" + open(log_path).read())


class Recorder:
    """Splits each direction of each connection into whole messages and writes them."""

    def __init__(self, out):
        self.out = out
        self.connections = 0
        self.frames = 0
        self.lock = threading.Lock()

    def connection(self):
        with self.lock:
            self.connections += 1
            return self.connections

    def write(self, conn, side, frame):
        with self.lock:
            self.frames += 1
            n = self.frames
        with open(os.path.join(self.out, f"{conn:04d}-{n:06d}-{side}.bin"), "wb") as f:
            f.write(frame)


async def pump(reader, writer, rec, conn, side):
    """Forwards bytes as they arrive and records each complete message."""
    buf = bytearray()
    try:
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                break
            writer.write(chunk)
            await writer.drain()
            buf += chunk
            while len(buf) >= 4:
                length = int.from_bytes(buf[:4], "little", signed=True)
                if length < 16 or len(buf) < length:
                    break
                rec.write(conn, side, bytes(buf[:length]))
                del buf[:length]
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


def start_relay(upstream_port, rec):
    """A relay on an ephemeral port, served by its own thread; returns its port."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    port = []

    async def handle(client_r, client_w):
        conn = rec.connection()
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", upstream_port)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(pump(client_r, server_w, rec, conn, "c"),
                             pump(server_r, client_w, rec, conn, "s"))

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port.append(server.sockets[0].getsockname()[1])
        ready.set()
        await asyncio.Event().wait()

    threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True).start()
    ready.wait(10)
    return port[0]


def run(argv, what):
    env = dict(os.environ, MONGOPLEX_PEERS_DIR=PEERS)
    r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    status = "ok" if r.returncode == 0 else f"FAILED ({r.returncode})"
    print(f"capture: {what}: {status} {r.stdout.strip()[-200:]} {r.stderr.strip()[-300:]}")


def extras(uri):
    """Traffic the CRUD scripts do not make: transactions, a change stream, server
    errors, document sequences, and hello's awaitable form."""
    import warnings

    import pymongo
    from pymongo.errors import PyMongoError

    # zstd and snappy need modules the venv lacks; pymongo then offers zlib alone.
    warnings.filterwarnings("ignore", message="Wire protocol compression")

    client = pymongo.MongoClient(uri, heartbeatFrequencyMS=500)
    db = client["fuzz_capture"]
    coll = db["c"]
    coll.drop()
    coll.insert_many([{"_id": i, "s": "x" * (i * 7), "n": {"a": [i, 2.5, None]}} for i in range(40)])
    for bad in [lambda: coll.insert_one({"_id": 1}),
                lambda: db.command("noSuchCommand"),
                lambda: coll.find_one({"$bogus": 1}),
                lambda: db.command("find", "c", batchSize=-3, maxTimeMS=50)]:
        try:
            bad()
        except PyMongoError:
            pass
    with client.start_session() as s:
        with s.start_transaction():
            coll.insert_one({"_id": "t1"}, session=s)
            coll.update_one({"_id": "t1"}, {"$set": {"v": 1}}, session=s)
        s.start_transaction()
        coll.insert_one({"_id": "t2"}, session=s)
        s.abort_transaction()
    list(coll.find({"n.a": {"$gte": 3}}, batch_size=5).sort("_id", -1).limit(20))
    list(coll.aggregate([{"$match": {"_id": {"$lt": 30}}}, {"$group": {"_id": None, "k": {"$sum": 1}}}]))
    try:
        with coll.watch(max_await_time_ms=100) as stream:
            coll.insert_one({"_id": "cs"})
            stream.try_next()
    except PyMongoError:
        pass
    coll.bulk_write([pymongo.InsertOne({"b": 1}), pymongo.DeleteMany({"b": 1}),
                     pymongo.ReplaceOne({"_id": 2}, {"r": True}, upsert=True)])
    db.command("ping")
    db.command("hello")
    time.sleep(1.5)  # a few streaming (awaitable) hellos from the monitor
    coll.drop()
    client.close()


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for old in os.listdir(out):
        if old.endswith(".bin"):
            os.remove(os.path.join(out, old))
    tmp = tempfile.mkdtemp(prefix="mongoplex-capture-")
    server, port = start_secantus(tmp)
    try:
        rec = Recorder(out)
        relay = start_relay(port, rec)
        uri = f"mongodb://127.0.0.1:{relay}/?{OPTIONS}"
        extras(uri)
        print("capture: pymongo extras: ok")
        run([os.path.join(PEERS, "venv", "bin", "python"), os.path.join(CLIENTS, "crud_pymongo.py"), uri],
            "pymongo crud")
        run(["node", os.path.join(CLIENTS, "crud_node.js"), uri], "node crud")
        legacy = open(os.path.join(PEERS, "legacy-python")).read().strip()
        run([legacy, os.path.join(CLIENTS, "legacy_pymongo3.py"),
             f"mongodb://127.0.0.1:{relay}/?directConnection=true&compressors=zlib"], "pymongo 3.11 legacy")
        time.sleep(0.5)
        print(f"capture: {rec.frames} messages on {rec.connections} connections in {out}")
    finally:
        server.kill()
        server.wait()


if __name__ == "__main__":
    main()
