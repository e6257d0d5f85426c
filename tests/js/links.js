// reduct-js 1.20.0 query links (Bucket.createQueryLink with a record
// identity { entry, timestamp }, what API >= 1.19 needs) against a daemon
// with authentication; every link is fetched with plain fetch, no token.
//
// Usage: node links.js URL BUCKET TOKEN   (reduct-js found through NODE_PATH)
//
// createQueryLink(entry | entries, start, stop, query, record, expireAt,
// fileName, baseUrl): a single entry goes as `entry` with `entries: []`, a
// list as `entries`; the default file name is `<entry>_<timestamp>.bin`.
// A numeric record (the legacy index) is refused by the client itself
// against API 1.20.  The script asserts everything and prints a JSON summary.

"use strict";

const assert = require("node:assert/strict");
const { Client } = require("reduct-js");
const { report } = require("./report");

const [url, bucketName, token] = process.argv.slice(2);
const T0 = 1700000000000000n;
const checks = [];

async function get(link, headers = {}) {
  const resp = await fetch(link, { headers });
  return [resp.status, resp.headers, Buffer.from(await resp.arrayBuffer()).toString()];
}

async function main() {
  const client = new Client(url, { apiToken: token });
  const bucket = await client.getOrCreateBucket(bucketName);
  for (let i = 0n; i < 4n; i++) {
    await (await bucket.beginWrite("js-a", { ts: T0 + 2n * i, labels: { i: String(i) } }))
      .write(`a${i}`);
    await (await bucket.beginWrite("js-b", { ts: T0 + 2n * i + 1n, labels: { i: String(i) } }))
      .write(`b${i}`);
  }
  const expire = new Date(Date.now() + 600_000);

  let link = await bucket.createQueryLink("js-a", undefined, undefined, undefined,
    { entry: "js-a", timestamp: T0 + 2n }, expire, undefined, url);
  assert.ok(link.startsWith(`${url}/api/v1/links/js-a_${T0 + 2n}.bin?ct=`), link);
  let [status, headers, body] = await get(link);
  assert.deepEqual([status, body], [200, "a1"]);
  assert.equal(headers.get("x-reduct-entry"), "js-a");
  assert.equal(headers.get("x-reduct-time"), String(T0 + 2n));
  assert.equal(headers.get("x-reduct-label-i"), "1");
  assert.equal(headers.get("content-disposition"), `attachment; filename="js-a_${T0 + 2n}.bin"`);
  assert.equal(headers.get("accept-ranges"), "bytes");
  checks.push("identity");

  link = await bucket.createQueryLink(["js-a", "js-b"], T0 + 1n, T0 + 6n,
    { when: { "&i": { $ne: 1 } } }, { entry: "js-b", timestamp: T0 + 5n }, expire,
    "pair.txt", url);
  assert.ok(link.startsWith(`${url}/api/v1/links/pair.txt?`), link);
  [status, headers, body] = await get(link);
  assert.deepEqual([status, body, headers.get("x-reduct-entry")], [200, "b2", "js-b"]);
  [status, headers] = await get(`${link}&e=js-a&ts=${T0 + 2n}`);
  assert.equal(status, 404);
  assert.equal(headers.get("x-reduct-error"), `Record js-a/${T0 + 2n} not found in query result`);
  [status, headers, body] = await get(`${link}&e=js-a&ts=${T0 + 4n}`);
  assert.deepEqual([status, body], [200, "a2"]);
  checks.push("multi-entry-when-override");

  [status, headers, body] = await get(link, { Range: "bytes=-1" });
  assert.deepEqual([status, body, headers.get("content-range")], [206, "2", "bytes 1-1/2"]);
  checks.push("range");

  await assert.rejects(
    bucket.createQueryLink("js-a", undefined, undefined, undefined, 0, expire, undefined, url),
    /Numeric record index selector was removed/);
  checks.push("client-refuses-index-at-1.20");

  link = await bucket.createQueryLink("js-a", undefined, undefined, undefined,
    { entry: "js-a", timestamp: T0 }, new Date(Date.now() - 5000), undefined, url);
  [status, headers] = await get(link);
  assert.deepEqual([status, headers.get("x-reduct-error")], [422, "Query link has expired"]);
  checks.push("expired");

  await bucket.remove();
  return { checks, facts: {} };
}

report(main, () => checks);
