#!/usr/bin/env node
// CRUD workload with the Node.js `mongodb` driver that asserts every result.
//
// Usage: node crud_node.js MONGODB_URI
//
// The driver is loaded from <repo>/.peers/node/node_modules (tests/peers/install.sh),
// or from $MONGOPLEX_PEERS_DIR/node/node_modules when that is set. Exits non-zero with a
// message naming the first mismatch; prints one summary line on success. Uses a fresh
// database per run and drops it at the end.
'use strict';

const path = require('path');
const crypto = require('crypto');

const peersDir = process.env.MONGOPLEX_PEERS_DIR || path.join(__dirname, '..', '..', '.peers');
const mongodb = require(path.join(peersDir, 'node', 'node_modules', 'mongodb'));
const { MongoClient, MongoServerError } = mongodb;
const driverVersion = require(path.join(peersDir, 'node', 'node_modules', 'mongodb', 'package.json')).version;

const N_DOCS = 1000;
const BATCH = 50;

class Failure extends Error {}

function check(cond, what) {
  if (!cond) throw new Failure(what);
}

// Records succeeded command replies so the script can assert what went on the wire.
class CommandLog {
  constructor(client) {
    this.started = 0;
    this.replies = [];
    client.on('commandStarted', () => { this.started += 1; });
    client.on('commandSucceeded', (ev) => this.replies.push([ev.commandName, ev.reply]));
    client.on('commandFailed', (ev) => this.replies.push([ev.commandName, { failed: String(ev.failure) }]));
  }
  count(name) {
    return this.replies.filter(([n]) => n === name).length;
  }
}

async function crud(db, log) {
  const coll = db.collection('items');
  const docs = Array.from({ length: N_DOCS }, (_, i) => ({ i, grp: i % 10, tag: 't' }));
  const ins = await coll.insertMany(docs);
  check(ins.insertedCount === N_DOCS, `insertMany inserted ${ins.insertedCount}`);

  const before = log.count('getMore');
  const seen = (await coll.find({}, { batchSize: BATCH }).sort({ i: 1 }).toArray()).map((d) => d.i);
  check(seen.length === N_DOCS && seen.every((v, idx) => v === idx),
    `find returned ${seen.length} docs, not 0..${N_DOCS - 1} in order`);
  const getMores = log.count('getMore') - before;
  check(getMores >= N_DOCS / BATCH - 1, `find with batchSize ${BATCH} sent only ${getMores} getMores`);

  check(await coll.countDocuments({}) === N_DOCS, 'countDocuments({}) != 1000');
  check(await coll.countDocuments({ grp: 3 }) === N_DOCS / 10, 'countDocuments(grp=3) != 100');

  const upd = await coll.updateMany({ grp: { $lt: 5 } }, { $set: { tag: 'low' } });
  check(upd.matchedCount === 500 && upd.modifiedCount === 500,
    `updateMany matched ${upd.matchedCount} modified ${upd.modifiedCount}`);
  check(await coll.countDocuments({ tag: 'low' }) === 500, 'updated docs not visible');

  const groups = await coll.aggregate([
    { $group: { _id: '$grp', n: { $sum: 1 }, total: { $sum: '$i' } } },
    { $sort: { _id: 1 } },
  ]).toArray();
  check(groups.length === 10, `$group returned ${groups.length} groups`);
  for (const [g, doc] of groups.entries()) {
    let want = 0;
    for (let i = g; i < N_DOCS; i += 10) want += i;
    check(doc._id === g && doc.n === 100 && doc.total === want,
      `$group ${g}: ${JSON.stringify(doc)}, want n=100 total=${want}`);
  }

  const del = await coll.deleteMany({ grp: 9 });
  check(del.deletedCount === 100, `deleteMany deleted ${del.deletedCount}`);
  check(await coll.countDocuments({}) === 900, 'count after deleteMany != 900');
}

async function uniqueIndex(db) {
  const users = db.collection('users');
  await users.createIndex({ email: 1 }, { unique: true, name: 'email_unique' });
  const names = (await users.listIndexes().toArray()).map((ix) => ix.name);
  check(names.includes('email_unique'), `unique index missing from listIndexes: ${names}`);
  await users.insertOne({ email: 'a@example.com' });
  let dup = null;
  try {
    await users.insertOne({ email: 'a@example.com' });
  } catch (e) {
    dup = e;
  }
  check(dup !== null, 'duplicate insert succeeded on a unique index');
  check(dup instanceof MongoServerError && dup.code === 11000, `duplicate insert failed with ${dup}`);
  check(await users.countDocuments({}) === 1, 'duplicate left a second document');
}

async function transactions(client, db, log) {
  await db.createCollection('txn');
  const txn = db.collection('txn');
  const session = client.startSession();
  try {
    session.startTransaction();
    await txn.insertOne({ k: 'committed' }, { session });
    await txn.updateOne({ k: 'committed' }, { $set: { v: 1 } }, { session });
    check(await txn.countDocuments({}, { session }) === 1, 'own write invisible inside transaction');
    await session.commitTransaction();
    const got = await txn.findOne({ k: 'committed' }, { projection: { _id: 0 } });
    check(got && got.k === 'committed' && got.v === 1, `committed document: ${JSON.stringify(got)}`);

    session.startTransaction();
    await txn.insertOne({ k: 'aborted' }, { session });
    await session.abortTransaction();
  } finally {
    await session.endSession();
  }
  check(await txn.countDocuments({ k: 'aborted' }) === 0, "aborted transaction's document is visible");
  check(await txn.countDocuments({}) === 1, 'transaction collection count != 1');
  check(log.count('commitTransaction') === 1 && log.count('abortTransaction') === 1,
    'commitTransaction/abortTransaction were not each sent once');
}

async function killedCursor(db, log) {
  const cursor = db.collection('items').find({}, { batchSize: 10 });
  const first = await cursor.next();
  check(first && 'i' in first, 'abandoned cursor returned no document');
  const id = cursor.id;
  check(id && !id.isZero(), 'cursor has no server id after its first batch');
  const before = log.count('killCursors');
  await cursor.close();
  const kills = log.replies.filter(([n]) => n === 'killCursors');
  check(kills.length === before + 1, 'close() sent no killCursors');
  const killed = kills[kills.length - 1][1].cursorsKilled || [];
  check(killed.some((k) => String(k) === String(id)), `killCursors reply ${JSON.stringify(kills[kills.length - 1][1])}`);
}

async function unacknowledged(db) {
  const res = await db.collection('w0').insertOne({ _id: 'w0-doc' }, { writeConcern: { w: 0 } });
  check(res.acknowledged === false, 'w:0 insert reported acknowledged');
  const deadline = Date.now() + 10000;
  while (!(await db.collection('w0').findOne({ _id: 'w0-doc' }))) {
    check(Date.now() < deadline, 'w:0 insert not visible after 10s');
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function main() {
  if (process.argv.length !== 3) throw new Failure('usage: crud_node.js MONGODB_URI');
  const client = new MongoClient(process.argv[2], {
    monitorCommands: true, serverSelectionTimeoutMS: 10000, appName: 'crud_node',
  });
  const log = new CommandLog(client);
  const name = `mp_crud_node_${process.pid}_${crypto.randomBytes(4).toString('hex')}`;
  await client.connect();
  const db = client.db(name);
  try {
    await crud(db, log);
    await uniqueIndex(db);
    await transactions(client, db, log);
    await killedCursor(db, log);
    await unacknowledged(db);
  } finally {
    await db.dropDatabase().catch(() => {});
    await client.close();
  }
  console.log(`crud_node: OK mongodb ${driverVersion} (node ${process.version}), db ${name}, ` +
    `${log.started} commands (${log.count('getMore')} getMore, ${log.count('killCursors')} killCursors)`);
}

main().catch((e) => {
  console.error(`crud_node: FAILED: ${e instanceof Failure ? e.message : e.stack || e}`);
  process.exit(1);
});
