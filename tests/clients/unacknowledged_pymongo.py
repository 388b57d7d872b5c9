"""Sends one unacknowledged (w:0) insert with pymongo 4 and exits.

usage: unacknowledged_pymongo.py URI ID
pymongo sends a w:0 write as OP_MSG with moreToCome and returns once it is written to
the socket, without a reply. Prints "unacknowledged_pymongo: sent ID".
"""
import sys

from pymongo import MongoClient

uri, doc_id = sys.argv[1], sys.argv[2]
client = MongoClient(uri, appName="w0-pymongo", w=0, serverSelectionTimeoutMS=30000)
result = client.mt.w0.insert_one({"_id": doc_id})
assert not result.acknowledged, "the write must be unacknowledged"
print(f"unacknowledged_pymongo: sent {doc_id}", flush=True)
client.close()
