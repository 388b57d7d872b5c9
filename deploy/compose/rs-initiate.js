// Run by the mongo-init service: initiate rs0 once, then wait until a primary exists,
// so that mongoplex (which waits for this service) starts against a working set.
try {
  rs.status();
  print("rs0 already initiated");
} catch (e) {
  if (e.codeName !== "NotYetInitialized") throw e;
  rs.initiate({
    _id: "rs0",
    members: [
      { _id: 0, host: "mongo1:27017" },
      { _id: 1, host: "mongo2:27017" },
      { _id: 2, host: "mongo3:27017" },
    ],
  });
  print("rs0 initiated");
}
for (let i = 0; i < 120; i++) {
  const primary = db.hello().primary;
  if (primary) {
    print("primary: " + primary);
    quit(0);
  }
  sleep(500);
}
print("no primary after 60 s");
quit(1);
