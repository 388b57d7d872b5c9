// Three change streams through an election, with the Node driver
// (tests/change_stream_election.rs).
//
// usage: node cs_election_node.js URI DB COLL COUNT SECONDS
//
// Opens three change streams on DB.COLL, then reads them concurrently until each has
// delivered the insert of {i: COUNT - 1} or SECONDS have passed. The test writes
// i = 0 .. COUNT-1 in order and kills and steps down primaries meanwhile; the driver must
// resume each stream through mongoplex by itself.
//
// Prints one JSON object per line, as cs_election_pymongo.py does: {"ready": true},
// {"seen": [n0, n1, n2]}, {"error": "..."}, and last {"report": {...}}. Exits 0 whatever
// the streams did: the test decides.
const { MongoClient } = require("mongodb");

const STREAMS = 3;

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

async function read(stream, seen, errors, last, deadline) {
  while (Date.now() < deadline) {
    let change;
    try {
      change = await stream.tryNext();
    } catch (e) {
      errors.push(`${e.name}: ${e.message} code ${e.code} labels ${JSON.stringify(e.errorLabels || [])}`.slice(0, 400));
      emit({ error: errors[errors.length - 1] });
      return;
    }
    if (!change || change.operationType !== "insert") continue;
    seen.push(change.fullDocument.i);
    if (change.fullDocument.i === last) return;
  }
  errors.push(`deadline: ${seen.length} events, none with i == ${last}`);
}

async function main() {
  const [uri, db, collName, count, seconds] = process.argv.slice(2);
  const last = Number(count) - 1;
  const deadline = Date.now() + Number(seconds) * 1000;
  const client = new MongoClient(uri, {
    appName: "cs-election-node",
    serverSelectionTimeoutMS: 20000,
    monitorCommands: true,
  });
  let aggregates = 0;
  const getMoreFailures = [];
  client.on("commandStarted", (ev) => {
    if (ev.commandName === "aggregate") aggregates++;
  });
  client.on("commandFailed", (ev) => {
    if (ev.commandName === "getMore") {
      const f = ev.failure || {};
      getMoreFailures.push(`code ${f.code} labels ${JSON.stringify(f.errorLabels || [])}`);
    }
  });
  await client.connect();
  const coll = client.db(db).collection(collName);
  const streams = [];
  const seen = [];
  const errors = [];
  for (let k = 0; k < STREAMS; k++) {
    const stream = coll.watch([], { maxAwaitTimeMS: 500 });
    // The driver opens a stream lazily: the first tryNext sends its aggregate. Nothing
    // has been written yet, so it cannot return an event of the test's sequence.
    const first = await stream.tryNext();
    if (first) throw new Error(`an event before the test wrote anything: ${JSON.stringify(first)}`);
    streams.push(stream);
    seen.push([]);
    errors.push([]);
  }
  emit({ ready: true });
  let shown = "";
  const progress = setInterval(() => {
    const counts = JSON.stringify(seen.map((s) => s.length));
    if (counts !== shown) {
      emit({ seen: seen.map((s) => s.length) });
      shown = counts;
    }
  }, 50);
  await Promise.all(streams.map((s, k) => read(s, seen[k], errors[k], last, deadline)));
  clearInterval(progress);
  await Promise.all(streams.map((s) => s.close().catch(() => {})));
  emit({
    report: {
      streams: seen,
      errors: errors.flatMap((list, k) => list.map((e) => `stream ${k}: ${e}`)),
      aggregates,
      get_more_failures: getMoreFailures,
    },
  });
  await client.close();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
