// Inserts documents with unique ids for a while and reports what happened, as JSON.
// usage: node writer.js URI SECONDS PREFIX
const { MongoClient } = require("mongodb");

async function main() {
  const [uri, seconds, prefix] = process.argv.slice(2);
  const client = new MongoClient(uri, { appName: "writer-node", retryWrites: true, serverSelectionTimeoutMS: 30000 });
  await client.connect();
  const coll = client.db("failover").collection("load");
  let acked = 0, i = 0;
  const errors = [];
  const deadline = Date.now() + Number(seconds) * 1000;
  while (Date.now() < deadline) {
    try {
      await coll.insertOne({ _id: `${prefix}-${i}` });
      acked++;
    } catch (e) {
      errors.push(`${e.name}: ${e.message}`.slice(0, 300));
    }
    i++;
  }
  console.log(JSON.stringify({ acked, attempts: i, errors }));
  await client.close();
}
main().catch((e) => { console.error(e); process.exit(1); });
