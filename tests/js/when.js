// reduct-js 1.20.0 using the `when` additions of API 1.19-1.20 (spec 1.20
// §6.3): one multi-entry query with $hour in Europe/Berlin and $gate, and
// the 422 text of a malformed $gate, through POST /io/:bucket/q +
// GET /io/:bucket/read (what this client uses at x-reduct-api >= 1.18).
//
// Usage: node when.js URL BUCKET   (reduct-js found through NODE_PATH)
//
// The script asserts everything itself and prints a JSON summary last.

"use strict";

const assert = require("node:assert/strict");
const { Client } = require("reduct-js");
const { report } = require("./report");

const [url, bucketName] = process.argv.slice(2);
const S = 1000000n;
const H = 3600n * S;
// 2024-07-01T00:00:00Z: Berlin is at UTC+2 that day.
const JULY_1 = 1719792000n * S;
const checks = [];

async function main() {
  const client = new Client(url);
  const bucket = await client.getOrCreateBucket(bucketName);
  // Two entries, one record an hour; level high from 09:00 to 14:00 UTC.
  for (const entry of ["js-a", "js-b"]) {
    for (let hour = 0n; hour < 24n; hour++) {
      const level = hour >= 9n && hour <= 14n ? "9" : "1";
      await (await bucket.beginWrite(entry, { ts: JULY_1 + hour * H + (entry === "js-b" ? 1n : 0n),
        labels: { level } })).write(`${entry}@${hour}`);
    }
  }
  // Berlin afternoon (12:00-17:59 local = 10:00-15:59 UTC) while the level
  // is high, for 3 h after its rising edge.  $gate only sees the records
  // that reach it (the afternoon ones): its edge is at 10:00 UTC, so 10, 11
  // and 12 UTC come back, not 13 and 14, and not 9 (morning in Berlin).
  const when = {
    $gte: [{ $hour: ["$timestamp", "Europe/Berlin"] }, 12],
    $lt: [{ $hour: ["$timestamp", "Europe/Berlin"] }, 18],
    $gate: ["3h", { "&level": { $gt: 5 } }],
  };
  const found = [];
  for await (const record of bucket.query(["js-a", "js-b"], undefined, undefined, { when })) {
    found.push([record.entry, Number((record.time - JULY_1) / H), (await record.read()).toString()]);
  }
  assert.deepEqual(found, [
    ["js-a", 10, "js-a@10"], ["js-b", 10, "js-b@10"],
    ["js-a", 11, "js-a@11"], ["js-b", 11, "js-b@11"],
    ["js-a", 12, "js-a@12"], ["js-b", 12, "js-b@12"],
  ], "$hour in Europe/Berlin and $gate over two entries");
  checks.push("query-hour-berlin-gate");

  await assert.rejects(async () => {
    for await (const record of bucket.query("js-a", undefined, undefined,
      { when: { $gate: ["1h"] } })) {
      await record.read();
    }
  }, (err) => {
    assert.equal(err.status, 422, `${err.status} ${err.message}`);
    assert.equal(err.message, "$gate requires exactly two operands");
    return true;
  }, "a $gate without its condition");
  checks.push("query-gate-422");

  await bucket.remove();
  checks.push("remove-bucket");
  return { checks, facts: {} };
}

report(main, () => checks);
