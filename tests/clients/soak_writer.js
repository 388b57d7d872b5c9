// A Node-driver writer of the soak (tests/soak.rs), through the proxy, for SECONDS:
// checked writes in sequence (see tests/soak_support/writes.rs: _id "<writer>-<seq>",
// even seq insert {n: 1}, odd seq upsert $inc n), 10 ms apart, retryable writes as the
// driver defaults; every 50th write also reads a find with batchSize 5 for 7 documents
// and closes it. Prints one JSON line: writer, attempts, errors [[seq, message]],
// cursor_reads, cursor_errors, clients.
// usage: node soak_writer.js URI SECONDS NAME
const { MongoClient } = require("mongodb");

async function main() {
  const [uri, seconds, name] = process.argv.slice(2);
  const client = new MongoClient(uri, { serverSelectionTimeoutMS: 30000 });
  await client.connect();
  const db = client.db("soak");
  const coll = db.collection("writes");
  const r = { writer: name, attempts: 0, errors: [], cursor_reads: 0, cursor_errors: [], clients: 1 };
  const deadline = Date.now() + Number(seconds) * 1000;
  const sleep = (ms) => new Promise((res) => setTimeout(res, ms));
  while (Date.now() < deadline) {
    const seq = r.attempts;
    const _id = `${name}-${seq}`;
    try {
      if (seq % 2 === 0) {
        await coll.insertOne({ _id, w: name, seq, n: 1 });
      } else {
        await coll.updateOne({ _id }, { $inc: { n: 1 }, $set: { w: name, seq } }, { upsert: true });
      }
    } catch (e) {
      r.errors.push([seq, `${e.name}: ${e.message}`.slice(0, 300)]);
    }
    r.attempts++;
    if (seq % 50 === 49) {
      try {
        const cursor = db.collection("docs").find({}).batchSize(5);
        for (let i = 0; i < 7 && (await cursor.hasNext()); i++) {
          await cursor.next();
          r.cursor_reads++;
        }
        await cursor.close();
      } catch (e) {
        r.cursor_errors.push(`${e.name}: ${e.message}`.slice(0, 300));
      }
    }
    await sleep(10);
  }
  console.log(JSON.stringify(r));
  await client.close();
}
main().catch((e) => { console.error(e); process.exit(1); });
