// reduct-js 1.20.0 against the limits of spec 1.20 §5.10: the storage cap
// (500 "storage limit exceeded" for a single write, per record in a batch)
// and the egress rate limit (429 with upstream's text), on a daemon started
// with RS_ENGINE_MAX_STORAGE_SIZE=8KiB and RS_RATE_LIMIT_EGRESS=1000/h.
//
// Usage: node limits.js URL BUCKET   (reduct-js found through NODE_PATH)
//
// The script asserts everything itself and prints a JSON summary last.

"use strict";

const assert = require("node:assert/strict");
const { Client } = require("reduct-js");
const { report } = require("./report");

const [url, bucketName] = process.argv.slice(2);
const T0 = 1700000000000000n;
const checks = [];

async function write(bucket, ts, size, fill) {
  const writer = await bucket.beginWrite("e", { ts, contentType: "text/plain" });
  await writer.write(Buffer.alloc(size, fill));
}

async function rejectsWith(promise, status, message, what) {
  await assert.rejects(promise, (err) => {
    assert.equal(err.status, status, `${what}: ${err.status} ${err.message}`);
    assert.match(err.message, message, what);
    return true;
  }, what);
}

async function main() {
  const facts = {};
  const client = new Client(url);
  const bucket = await client.getOrCreateBucket(bucketName);

  await write(bucket, T0, 600, "a");
  await rejectsWith(write(bucket, T0 + 1n, 9000, "b"), 500, /^storage limit exceeded$/,
    "single write beyond the cap");
  checks.push("storage-cap-single");

  const batch = await bucket.beginWriteBatch("e");
  batch.add(T0 + 2n, Buffer.alloc(9000, "c"), "text/plain");
  batch.add(T0 + 3n, Buffer.alloc(10, "d"), "text/plain");
  const errors = await batch.write();
  assert.deepEqual([...errors.keys()], [T0 + 2n], "per-record errors");
  assert.equal(errors.get(T0 + 2n).status, 500);
  assert.equal(errors.get(T0 + 2n).message, "storage limit exceeded");
  checks.push("storage-cap-batch");

  const first = await bucket.beginRead("e", T0);
  assert.equal((await first.read()).length, 600);
  const second = bucket.beginRead("e", T0).then((record) => record.read());
  await rejectsWith(second, 429,
    /^rate limit for egress bytes \(client 127\.0\.0\.1\) exceeded: used=1\.2 KB \(1200\) limit=1\.0 KB \(1000\) retry_after=\d+s$/,
    "second read beyond the egress limit");
  await assert.rejects(second, (err) => { facts.egress_error = err.message; return true; });
  checks.push("egress-rate-limit");
  return { checks, facts };
}

report(main, () => checks);
