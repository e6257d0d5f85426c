// reduct-js 1.20.0 writing a record from a stream (spec 1.20 §5.2).
//
// Usage: node stream_write.js URL BUCKET   (reduct-js found through NODE_PATH)
//
// How this client speaks the protocol (lib/cjs/Record.js, http/HttpClient.js):
// WritableRecord.write(stream, size) sends a ReadableStream body with fetch
// (duplex "half"): no Content-Length, Transfer-Encoding: chunked, and the
// size in x-reduct-content-length, whatever API version the server
// advertises.  A Buffer or string body goes with Content-Length as before.
//
// The script asserts everything itself and prints a JSON summary last.

"use strict";

const assert = require("node:assert/strict");
const { Client } = require("reduct-js");
const { report } = require("./report");

const [url, bucketName] = process.argv.slice(2);
const T0 = 1700000000000000n;

// A web ReadableStream handing out `chunks` one per pull.
function streamOf(chunks) {
  let i = 0;
  return new ReadableStream({
    pull(controller) {
      if (i < chunks.length) controller.enqueue(chunks[i++]);
      else controller.close();
    },
  });
}

function pieces(buffer, count) {
  const step = Math.ceil(buffer.length / count);
  const out = [];
  for (let pos = 0; pos < buffer.length; pos += step) out.push(new Uint8Array(buffer.subarray(pos, pos + step)));
  return out;
}

async function readBack(bucket, ts) {
  const record = await bucket.beginRead("s", ts);
  const data = await record.read();
  return [Buffer.from(data), record.contentType, { ...record.labels }];
}

async function main() {
  const checks = [];
  const facts = {};
  const client = new Client(url);
  const bucket = await client.getOrCreateBucket(bucketName);

  const small = Buffer.from("a small record, streamed in pieces");
  let writer = await bucket.beginWrite("s", { ts: T0, contentType: "text/plain", labels: { k: "v" } });
  await writer.write(streamOf(pieces(small, 3)), small.length);
  assert.deepEqual(await readBack(bucket, T0), [small, "text/plain", { k: "v" }]);
  checks.push("stream-small");

  const large = Buffer.alloc(3 * 1024 * 1024 + 17);
  for (let i = 0; i < large.length; i++) large[i] = (i * 131 + 7) & 0xff;
  writer = await bucket.beginWrite("s", { ts: T0 + 1n });
  await writer.write(streamOf(pieces(large, 50)), large.length);
  const [got] = await readBack(bucket, T0 + 1n);
  assert.equal(got.length, large.length);
  assert.ok(got.equals(large), "large record read back");
  checks.push("stream-large");

  writer = await bucket.beginWrite("s", { ts: T0 + 2n });
  await writer.write(streamOf([]), 0);
  assert.equal((await readBack(bucket, T0 + 2n))[0].length, 0);
  checks.push("stream-empty");

  writer = await bucket.beginWrite("s", { ts: T0 + 3n });
  await assert.rejects(writer.write(streamOf(pieces(small, 2)), small.length - 1), (err) => {
    facts.longer = `${err.status} ${err.message}`;
    return err.status === 400;
  });
  writer = await bucket.beginWrite("s", { ts: T0 + 4n });
  await assert.rejects(writer.write(streamOf(pieces(small, 2)), small.length + 1), (err) => {
    facts.shorter = `${err.status} ${err.message}`;
    return err.status === 400;
  });
  for (const ts of [T0 + 3n, T0 + 4n]) {
    await assert.rejects(bucket.beginRead("s", ts), (err) => err.status === 404);
  }
  checks.push("stream-length-held");

  await bucket.remove();
  checks.push("remove-bucket");
  return { checks, facts };
}

report(main);
