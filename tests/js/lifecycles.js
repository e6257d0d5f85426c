// reduct-js 1.20.0 and lifecycle policies (spec 1.20 §7).
//
// Usage: node lifecycles.js URL BUCKET   (reduct-js found through NODE_PATH)
//
// createLifecycle / updateLifecycle send LifecycleSettings.serialize(...):
// type (default "delete"), bucket, entries, older_than, interval (left out
// of the JSON when undefined: the server's "3600s"), when, mode (default
// "enabled").  getLifecycleList / getLifecycle parse LifecycleInfo (lastRun
// a Date from last_run, undefined for null) and the settings;
// setLifecycleMode sends PATCH …/mode; deleteLifecycle removes.
//
// The pytest side has made policy "<BUCKET>-ran" run once before this
// script starts: its lastRun must be a Date close to now.
//
// The script asserts everything itself and prints a JSON summary last.

"use strict";

const assert = require("node:assert/strict");
const { Client } = require("reduct-js");
const { report } = require("./report");

const [url, bucketName] = process.argv.slice(2);
const checks = [];
const facts = {};

async function rejectsWith(promise, status, message, what) {
  await assert.rejects(promise, (err) => {
    assert.equal(err.status, status, `${what}: ${err.status} ${err.message}`);
    assert.equal(err.message, message, what);
    return true;
  }, what);
}

async function main() {
  const client = new Client(url);
  await client.getOrCreateBucket(bucketName);
  const name = `${bucketName}-policy`;

  await client.createLifecycle(name, {
    bucket: bucketName, entries: ["cam-*"], olderThan: "7d",
    when: { "&kind": { $eq: "raw" } },
  });
  let full = await client.getLifecycle(name);
  assert.deepEqual(full.info, {
    name, mode: "enabled", type: "delete", lastRun: undefined, isProvisioned: false,
    isRunning: true,
  });
  // (the client's JSON objects have a null prototype: compare plain copies)
  assert.deepEqual(JSON.parse(JSON.stringify(full.settings)), {
    lifecycleType: "delete", bucket: bucketName, entries: ["cam-*"], olderThan: "7d",
    interval: "3600s", when: { "&kind": { $eq: "raw" } }, mode: "enabled",
  });
  checks.push("create-and-get");

  await rejectsWith(client.createLifecycle(name, { bucket: bucketName, olderThan: "7d" }),
    409, `Lifecycle '${name}' already exists`, "create twice");
  await rejectsWith(client.createLifecycle(`${name}-x`, {
    lifecycleType: "compress", bucket: bucketName, olderThan: "7d", when: {},
  }), 422, "Lifecycle type 'compress' does not support 'when' condition", "compress + when");
  await rejectsWith(client.createLifecycle(`${name}-x`, {
    bucket: bucketName, olderThan: "2h", interval: "1m",
  }), 422, "Lifecycle interval '1m' is shorter than minimum allowed value of 10m", "interval");
  checks.push("create-errors");

  await client.updateLifecycle(name, {
    lifecycleType: "compress", bucket: bucketName, entries: [], olderThan: "1h 30m",
    interval: "15m", mode: "dry_run",
  });
  full = await client.getLifecycle(name);
  assert.deepEqual([full.info.type, full.info.mode, full.settings.olderThan,
    full.settings.interval, full.settings.when], ["compress", "dry_run", "1h 30m", "15m", null]);
  checks.push("update");

  await client.setLifecycleMode(name, "disabled");
  let listed = await client.getLifecycleList();
  const mine = listed.find((info) => info.name === name);
  assert.equal(mine.mode, "disabled");
  assert.deepEqual(listed.map((info) => info.name),
    [...listed.map((info) => info.name)].sort(), "the list is sorted by name");
  checks.push("set-mode");

  const ran = listed.find((info) => info.name === `${bucketName}-ran`);
  assert.ok(ran, `policy ${bucketName}-ran listed`);
  assert.ok(ran.lastRun instanceof Date && !Number.isNaN(ran.lastRun.getTime()),
    `lastRun ${ran.lastRun}`);
  assert.ok(Math.abs(ran.lastRun.getTime() - Date.now()) < 3600 * 1000, "lastRun near now");
  facts.last_run = ran.lastRun.toISOString();
  checks.push("last-run");

  await client.deleteLifecycle(name);
  await rejectsWith(client.getLifecycle(name), 404, `Lifecycle '${name}' does not exist`,
    "get after delete");
  await rejectsWith(client.setLifecycleMode(name, "enabled"), 404,
    `Lifecycle '${name}' does not exist`, "mode after delete");
  listed = await client.getLifecycleList();
  assert.equal(listed.find((info) => info.name === name), undefined);
  checks.push("remove");
  return { checks, facts };
}

report(main, () => checks);
