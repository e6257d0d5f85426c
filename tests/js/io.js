// reduct-js 1.20.0 against the 1.18-1.19 data plane of a daemon that
// advertises x-reduct-api 1.20 (spec 1.20 §1, §3.2, §5.2, §5.3, §10.2).
//
// Usage: node io.js URL BUCKET   (reduct-js found through NODE_PATH)
//
// How this client speaks the I/O API (lib/cjs/RecordBatch.js, Bucket.js,
// batch/BatchV2.js), which it uses once a response said x-reduct-api >= 1.18:
// * RecordBatch (beginWriteRecordBatch) -> POST /io/:bucket/write.  Since
//   1.19.2 it numbers entries by first appearance in (timestamp, entry)
//   order and writes the body in that order, while a server consumes it by
//   (entry index, timestamp) (§1.9 rule 1).  Both orders agree only when no
//   entry's records interleave in time with another entry's: an
//   INTERLEAVED multi-entry write batch from this client is stored with its
//   contents swapped between records by ANY correct server (upstream
//   included).  That cannot be fixed server-side; the write batches here are
//   therefore never interleaved (reads are: the server closes a batch
//   before a record that would interleave it, §1.9 rule 2).
// * beginUpdateRecordBatch -> PATCH /io/:bucket/update with "0,,<delta>" by
//   label name; it throws client-side if a record's labels equal the
//   previous record's of the same entry (empty delta), so the updates below
//   give every record of an entry different values for the same keys.
// * beginRemoveRecordBatch -> DELETE /io/:bucket/remove.
// * query / removeQuery -> POST /io/:bucket/q + GET|HEAD /io/:bucket/read.
// * writeAttachments / readAttachments / removeAttachments: <entry>/$meta
//   records with label key (timestamps now_ms*1000 + i); removal queries
//   with when {"$in": [{"&key": {"$cast": "string"}}, ...]} ("$k" sent as
//   "$$k", §6.3) and sends an update batch, empty when nothing matched.
// * WritableRecord.write(ReadableStream, size) sends the body chunked with
//   x-reduct-content-length and no Content-Length (§5.2).
// * setReplicationMode -> PATCH /replications/:name/mode {"mode": ...}
//   (a JSON string without a content type).
// Per-record errors come back as Map(entry -> Map(ts -> APIError)); the
// client cuts the message at its second comma.
//
// The script asserts everything itself and prints a JSON summary last.

"use strict";

const assert = require("node:assert/strict");
const crypto = require("node:crypto");
const { Client } = require("reduct-js");
const { report } = require("./report");

const [url, bucketName] = process.argv.slice(2);
const T0 = 1700000000000000n;
// module-level, so that a failure reports how far the script got
const checks = [];
const facts = {};

async function readOne(bucket, entry, ts) {
  const record = await bucket.beginRead(entry, ts);
  const data = await record.read();
  return { data, contentType: record.contentType, labels: { ...record.labels } };
}

async function rejectsWith(promise, status, what) {
  await assert.rejects(promise, (err) => {
    assert.equal(err.status, status, `${what}: ${err.status} ${err.message}`);
    return true;
  }, what);
}

async function collect(iterator) {
  const rows = [];
  for await (const record of iterator) {
    const data = await record.read();
    rows.push([record.entry, record.time, data.toString("latin1"), { ...record.labels },
      record.contentType]);
  }
  return rows;
}

function errorsOf(map) {
  // Map(entry -> Map(ts -> APIError)) as a plain object for deepEqual
  const out = {};
  for (const [entry, byTs] of map) {
    out[entry] = {};
    for (const [ts, err] of byTs) out[entry][ts.toString()] = [err.status, err.message];
  }
  return out;
}

function sortRows(rows) {
  return rows.sort((a, b) => (a[1] === b[1] ? (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)
    : a[1] < b[1] ? -1 : 1));
}

async function main() {
  const client = new Client(url);
  const bucket = await client.getOrCreateBucket(bucketName);
  await client.getInfo();
  assert.deepEqual(client.httpClient.apiVersion, [1, 20], "x-reduct-api as seen by the client");

  // -- multi-entry write (entries one after the other in time) -------------
  const model = new Map(); // "entry\0ts" -> [entry, ts, data, labels, ct]
  const batch = bucket.beginWriteRecordBatch();
  const put = (entry, ts, data, ct, labels) => {
    batch.add(entry, ts, data, ct, labels);
    model.set(`${entry}\0${ts}`, [entry, ts, Buffer.from(data).toString("latin1"), labels ?? {},
      ct ?? "application/octet-stream"]);
  };
  for (let i = 0n; i < 5n; i++) {
    put("js-a", T0 + i, `a${i}-` + "x".repeat(Number(i) * 50), "text/plain", { i: `${i}`, side: "a" });
  }
  for (let i = 0n; i < 4n; i++) {
    put("js-b", T0 + 10n + i, crypto.randomBytes(100 + Number(i) * 1000), "image/png",
      i < 2n ? { i: `${i}`, hot: "yes" } : { i: `${i}` });
  }
  for (let i = 0n; i < 3n; i++) {
    put("js/nested/cell", T0 + 20n + i, `nested ${i}`, "application/x-cell", { note: "a,b" });
  }
  const writeErrors = await batch.send();
  assert.deepEqual(errorsOf(writeErrors), {}, "errors of a clean multi-entry batch");
  for (const [entry, ts, data, labels, ct] of model.values()) {
    const got = await readOne(bucket, entry, ts);
    assert.equal(got.data.toString("latin1"), data, `content of ${entry}@${ts}`);
    assert.deepEqual([got.contentType, got.labels], [ct, labels], `metadata of ${entry}@${ts}`);
  }
  checks.push("record-batch-write");

  const dup = bucket.beginWriteRecordBatch();
  dup.add("js-a", T0 + 4n, "duplicate", "text/plain", {});
  dup.add("js-a", T0 + 5n, "after the duplicate", "text/plain", { i: "5" });
  dup.add("js-c", T0 + 6n, "a new entry", "text/plain", { i: "6" });
  const dupErrors = await dup.send();
  assert.deepEqual(errorsOf(dupErrors), {
    "js-a": { [`${T0 + 4n}`]: [409, `A record with timestamp ${T0 + 4n} already exists`] },
  }, "per-record errors");
  assert.equal((await readOne(bucket, "js-a", T0 + 4n)).data.toString("latin1"),
    model.get(`js-a\0${T0 + 4n}`)[2], "the original record kept");
  assert.equal((await readOne(bucket, "js-a", T0 + 5n)).data.toString(), "after the duplicate");
  assert.equal((await readOne(bucket, "js-c", T0 + 6n)).data.toString(), "a new entry");
  model.set(`js-a\0${T0 + 5n}`, ["js-a", T0 + 5n, "after the duplicate", { i: "5" }, "text/plain"]);
  model.set(`js-c\0${T0 + 6n}`, ["js-c", T0 + 6n, "a new entry", { i: "6" }, "text/plain"]);
  checks.push("record-batch-per-record-errors");

  // -- queries over several entries ----------------------------------------
  const all = sortRows([...model.values()]);
  assert.deepEqual(await collect(bucket.query(["js-a", "js-b"])),
    all.filter((r) => r[0] === "js-a" || r[0] === "js-b"), "two entries by name");
  assert.deepEqual(await collect(bucket.query(["js-*"])),
    all.filter((r) => r[0].startsWith("js-")), "js-*");
  assert.deepEqual(await collect(bucket.query(["js*"])), all, "js* (nested included)");
  assert.deepEqual(await collect(bucket.query(["*"], T0 + 3n, T0 + 21n,
    { when: { "&i": { $lt: 2 } } })),
  all.filter((r) => r[1] >= T0 + 3n && r[1] < T0 + 21n && r[3].i !== undefined && Number(r[3].i) < 2),
  "range and when");
  const heads = await collect(bucket.query(["js-b", "js-c"], undefined, undefined, { head: true }));
  assert.deepEqual(heads, all.filter((r) => r[0] === "js-b" || r[0] === "js-c")
    .map(([e, t, , lb, ct]) => [e, t, "", lb, ct]), "HEAD only");
  checks.push("query-multi-entry");

  // interleaved records (written per entry with v1 batches) read back exactly
  const mixed = [];
  const names = ["mix-a", "mix-b", "mix-c"];
  for (const name of names) {
    const v1 = await bucket.beginWriteBatch(name);
    for (let i = 0; i < 70; i++) {
      const ts = T0 + 1000n + BigInt(i * 3 + names.indexOf(name));
      const data = `${name}:${i}:` + crypto.randomBytes(i * 13 % 400).toString("hex");
      const labels = { n: `${i}`, parity: i % 2 ? "odd" : "even" };
      v1.add(ts, data, "text/plain", labels);
      mixed.push([name, ts, data, labels, "text/plain"]);
    }
    assert.equal((await v1.write()).size, 0, `errors writing ${name}`);
  }
  sortRows(mixed);
  const mixedRead = await collect(bucket.query(["mix-*"]));
  assert.equal(mixedRead.length, 210, "interleaved records read");
  assert.deepEqual(mixedRead, mixed, "interleaved records: content, labels, order");
  facts.interleaved_records = mixedRead.length;
  checks.push("query-interleaved");

  // a continuous query over two entries (both exist when it is created)
  await (await bucket.beginWrite("live-a", { ts: T0 + 2000n, labels: { keep: "yes" } })).write("a-before");
  await (await bucket.beginWrite("live-b", { ts: T0 + 2001n, labels: { keep: "no" } })).write("b-before");
  const live = [];
  const consumer = (async () => {
    const it = bucket.query(["live-*"], T0 + 2000n, undefined,
      { continuous: true, pollInterval: 0.2, when: { "&keep": { $eq: "yes" } } });
    for await (const record of it) {
      live.push([record.entry, Number(record.time - T0), (await record.read()).toString()]);
      if (live.length === 3) break;
    }
  })();
  await new Promise((resolve) => setTimeout(resolve, 300));
  for (const [entry, ts, keep] of [["live-b", 2002n, "yes"], ["live-a", 2003n, "no"], ["live-a", 2004n, "yes"]]) {
    await (await bucket.beginWrite(entry, { ts: T0 + ts, labels: { keep } })).write(`${entry}-${ts}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  let timer;
  await Promise.race([consumer, new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`continuous query got only ${JSON.stringify(live)}`)), 15000);
  })]);
  clearTimeout(timer);
  assert.deepEqual(live, [["live-a", 2000, "a-before"], ["live-b", 2002, "live-b-2002"],
    ["live-a", 2004, "live-a-2004"]], "records of two entries written while subscribed");
  checks.push("continuous-query");

  // -- update and remove across entries ------------------------------------
  const upd = bucket.beginUpdateRecordBatch();
  upd.addOnlyLabels("js-a", T0, { side: "left", i: "" });
  upd.addOnlyLabels("js-a", T0 + 1n, { side: "right", i: "" });
  upd.addOnlyLabels("js-b", T0 + 10n, { hot: "no" });
  upd.addOnlyLabels("js-b", T0 + 99n, { hot: "x" });
  const updErrors = await upd.send();
  assert.deepEqual(errorsOf(updErrors), {
    "js-b": { [`${T0 + 99n}`]: [404, `Record ${T0 + 99n} not found in entry ${bucketName}/js-b`] },
  }, "per-record errors of the update");
  assert.deepEqual((await readOne(bucket, "js-a", T0)).labels, { side: "left" });
  assert.deepEqual((await readOne(bucket, "js-a", T0 + 1n)).labels, { side: "right" });
  assert.deepEqual((await readOne(bucket, "js-b", T0 + 10n)).labels, { i: "0", hot: "no" });
  checks.push("record-batch-update");

  const rm = bucket.beginRemoveRecordBatch();
  rm.addOnlyTimestamp("js-a", T0 + 2n);
  rm.addOnlyTimestamp("js/nested/cell", T0 + 21n);
  rm.addOnlyTimestamp("js-c", T0 + 7n);
  const rmErrors = await rm.send();
  assert.deepEqual(errorsOf(rmErrors), {
    "js-c": { [`${T0 + 7n}`]: [404, `Record ${T0 + 7n} not found in entry ${bucketName}/js-c`] },
  }, "per-record errors of the removal");
  await rejectsWith(bucket.beginRead("js-a", T0 + 2n), 404, "removed js-a record");
  await rejectsWith(bucket.beginRead("js/nested/cell", T0 + 21n), 404, "removed nested record");
  assert.equal(await bucket.removeQuery(["mix-a", "mix-b"], undefined, undefined,
    { when: { "&parity": { $eq: "odd" } } }), 70, "remove query over two entries");
  assert.equal((await collect(bucket.query(["mix-*"], undefined, undefined, { head: true }))).length,
    140, "records left after the remove query");
  checks.push("record-batch-remove-and-remove-query");

  // -- attachments -----------------------------------------------------------
  const meta = { schema: { type: "object", fields: ["x"] }, $plugin: { name: "ros" }, units: "mm" };
  await bucket.writeAttachments("js/nested/cell", meta);
  assert.deepEqual(await bucket.readAttachments("js/nested/cell"), meta, "attachments read back");
  const listed = (await bucket.getEntryList()).map((e) => e.name).sort();
  assert.deepEqual(listed, ["js", "js-a", "js-b", "js-c", "js/nested", "js/nested/cell",
    "live-a", "live-b", "mix-a", "mix-b", "mix-c"], "entries ($meta hidden, parents listed)");
  await bucket.removeAttachments("js/nested/cell", ["absent"]);
  assert.deepEqual(await bucket.readAttachments("js/nested/cell"), meta, "nothing matched");
  await bucket.removeAttachments("js/nested/cell", ["units"]);
  delete meta.units;
  assert.deepEqual(await bucket.readAttachments("js/nested/cell"), meta, "a plain key removed");
  await bucket.removeAttachments("js/nested/cell");
  assert.deepEqual(await bucket.readAttachments("js/nested/cell"), {}, "all removed");
  checks.push("attachments");

  // -- a stream-bodied single write: chunked + x-reduct-content-length --------
  const parts = [crypto.randomBytes(1000), crypto.randomBytes(700000), Buffer.from("end")];
  const size = parts.reduce((n, p) => n + p.length, 0);
  let next = 0;
  const stream = new ReadableStream({
    pull(controller) {
      if (next < parts.length) controller.enqueue(parts[next++]);
      else controller.close();
    },
  });
  const writer = await bucket.beginWrite("js/stream", {
    ts: T0 + 500n, contentType: "application/x-stream", labels: { how: "chunked" },
  });
  await writer.write(stream, size);
  const streamed = await readOne(bucket, "js/stream", T0 + 500n);
  assert.ok(streamed.data.equals(Buffer.concat(parts)), "streamed record byte-exact");
  assert.deepEqual([streamed.contentType, streamed.labels], ["application/x-stream", { how: "chunked" }]);
  facts.streamed_size = size;
  checks.push("stream-write-chunked");

  // -- replication mode ------------------------------------------------------
  const dst = await client.getOrCreateBucket(`${bucketName}-dst`);
  const replName = `${bucketName}-repl`;
  await client.createReplication(replName, {
    srcBucket: bucketName, dstBucket: `${bucketName}-dst`, dstHost: url, entries: ["js-a"],
  });
  assert.equal((await client.getReplication(replName)).info.mode, "enabled");
  await client.setReplicationMode(replName, "paused");
  let repl = await client.getReplication(replName);
  assert.deepEqual([repl.info.mode, repl.settings.mode], ["paused", "paused"], "paused");
  assert.equal((await client.getReplicationList()).find((r) => r.name === replName).mode, "paused");
  await client.setReplicationMode(replName, "disabled");
  repl = await client.getReplication(replName);
  assert.deepEqual([repl.info.mode, repl.info.isActive], ["disabled", false], "disabled");
  await rejectsWith(client.setReplicationMode(`${replName}-none`, "paused"), 404, "missing replication");
  await client.deleteReplication(replName);
  await dst.remove();
  checks.push("replication-mode");

  // last, so that a server without "$$" literals (spec §6.3) fails here only
  const dollar = { $plugin: { name: "ros" }, plain: { x: 1 } };
  await bucket.writeAttachments("js-a", dollar);
  await bucket.removeAttachments("js-a", ["$plugin"]);
  assert.deepEqual(await bucket.readAttachments("js-a"), { plain: { x: 1 } }, "a $-key removed");
  checks.push("attachments-dollar-key");

  await bucket.remove();
  checks.push("remove-bucket");
  return { checks, facts };
}

report(main, () => checks);
