// CRUD workload for mongosh that asserts every result.
//
// Usage: .peers/node/node_modules/.bin/mongosh --quiet --norc MONGODB_URI --file crud_mongosh.js
//
// mongosh takes the connection string on its own command line; `db` is whatever database
// the URI names, and the script works in a fresh sibling database that it drops at the end.
// Any failed check throws, which makes mongosh exit non-zero; success prints one line.

function check(cond, what) {
  if (!cond) throw new Error('crud_mongosh: FAILED: ' + what);
}

const name = 'mp_crud_sh_' + new ObjectId().toHexString();
const tdb = db.getSiblingDB(name);
const N = 1000;

try {
  // --- CRUD
  const docs = [];
  for (let i = 0; i < N; i++) docs.push({ i: i, grp: i % 10 });
  const ins = tdb.items.insertMany(docs);
  check(Object.keys(ins.insertedIds).length === N, 'insertMany inserted ' + Object.keys(ins.insertedIds).length);
  check(tdb.items.countDocuments({}) === N, 'countDocuments != 1000');
  check(tdb.items.findOne({ i: 7 }).grp === 7, 'findOne({i: 7}) wrong document');

  const upd = tdb.items.updateMany({ grp: { $lt: 5 } }, { $set: { tag: 'low' } });
  check(upd.matchedCount === 500 && upd.modifiedCount === 500,
    'updateMany matched ' + upd.matchedCount + ' modified ' + upd.modifiedCount);
  check(tdb.items.countDocuments({ tag: 'low' }) === 500, 'updated docs not visible');

  const del = tdb.items.deleteMany({ grp: 9 });
  check(del.deletedCount === 100, 'deleteMany deleted ' + del.deletedCount);
  check(tdb.items.countDocuments({}) === 900, 'count after deleteMany != 900');

  const groups = tdb.items.aggregate([{ $group: { _id: '$grp', n: { $sum: 1 } } }, { $sort: { _id: 1 } }]).toArray();
  check(groups.length === 9 && groups.every((g) => g.n === 100), '$group: ' + JSON.stringify(groups));

  // --- a cursor with batchSize: the first batch holds 50, the rest comes by getMore
  const cursor = tdb.items.find({}).sort({ i: 1 }).batchSize(50);
  check(cursor.hasNext(), 'batched cursor is empty');
  cursor.next();
  check(cursor.objsLeftInBatch() === 49, 'first batch held ' + (cursor.objsLeftInBatch() + 1) + ' docs, not 50');
  let seen = 1;
  let last = 0;
  while (cursor.hasNext()) {
    const d = cursor.next();
    check(d.i > last, 'cursor out of order at ' + d.i);
    last = d.i;
    seen++;
  }
  check(seen === 900, 'batched cursor returned ' + seen + ' docs, not 900');

  // --- transactions: one committed (visible), one aborted (absent)
  tdb.createCollection('txn');
  const session = db.getMongo().startSession();
  const sdb = session.getDatabase(name);
  session.startTransaction();
  sdb.txn.insertOne({ k: 'committed' });
  check(sdb.txn.countDocuments({}) === 1, 'own write invisible inside transaction');
  session.commitTransaction();
  check(tdb.txn.countDocuments({ k: 'committed' }) === 1, "committed transaction's document not visible");

  session.startTransaction();
  sdb.txn.insertOne({ k: 'aborted' });
  session.abortTransaction();
  session.endSession();
  check(tdb.txn.countDocuments({ k: 'aborted' }) === 0, "aborted transaction's document is visible");
  check(tdb.txn.countDocuments({}) === 1, 'transaction collection count != 1');
} finally {
  tdb.dropDatabase();
}

print('crud_mongosh: OK mongosh ' + version() + ', db ' + name);
