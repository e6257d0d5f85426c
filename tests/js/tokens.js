// reduct-js 1.20.0 and tokens v2 (spec 1.20 §4) against a daemon started with
// RS_API_TOKEN.
//
// Usage: node tokens.js URL INIT_TOKEN PREFIX   (reduct-js found through NODE_PATH)
//
// createToken({permissions, expiresAt, ttl, ipAllowlist}) sends the nested body
// (the server said x-reduct-api 1.20); rotateToken posts {} to
// /tokens/:name/rotate; getToken, getTokenList and me parse the new fields.
// The script asserts everything itself and prints a JSON summary last.

"use strict";

const assert = require("node:assert/strict");
const { Client } = require("reduct-js");
const { report } = require("./report");

const [url, initToken, prefix] = process.argv.slice(2);
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
  const admin = new Client(url, { apiToken: initToken });
  const me = await admin.me();
  assert.deepEqual([me.name, me.ipAllowlist, me.isExpired, me.ttl, me.expiresAt],
    ["init-token", [], false, null, undefined], "me of init-token");
  checks.push("me-v2-fields");

  const name = `${prefix}-v2`;
  const expiresAt = Math.floor(Date.now() / 1000) * 1000 + 86400000;
  const value = await admin.createToken(name, {
    permissions: { fullAccess: false, read: ["b*"], write: [] },
    expiresAt, ttl: 600, ipAllowlist: ["127.0.0.1"],
  });
  assert.match(value, new RegExp(`^${name}-[0-9a-f]{32}$`), "token value");
  const token = await admin.getToken(name);
  assert.deepEqual(
    [token.name, token.expiresAt, token.ttl, token.ipAllowlist, token.isExpired, token.lastAccess,
      token.isProvisioned, token.permissions],
    [name, expiresAt, 600, ["127.0.0.1"], false, undefined, false,
      { fullAccess: false, read: ["b*"], write: [] }],
    "getToken v2 fields");
  const listed = (await admin.getTokenList()).map((t) => t.name);
  assert.deepEqual(listed, [...listed].sort(), "list sorted");
  assert.ok(listed.includes(name), "listed");
  // a plain permissions object is still accepted (nested body without terms)
  const plain = await admin.createToken(`${prefix}-plain`, { fullAccess: false, read: [], write: [] });
  assert.ok(plain.startsWith(`${prefix}-plain-`), "plain create");
  checks.push("create-and-get-v2");

  const user = new Client(url, { apiToken: value });
  assert.equal((await user.me()).name, name, "me with the new token");
  const rotated = await admin.rotateToken(name);
  assert.notEqual(rotated, value, "a new value");
  await rejectsWith(user.me(), 401, "Invalid token", "old value refused");
  assert.equal((await new Client(url, { apiToken: rotated }).me()).name, name, "new value works");
  assert.ok((await admin.getToken(name)).createdAt >= token.createdAt, "created_at moved on");
  await rejectsWith(admin.rotateToken("init-token"), 409, "Can't rotate init token", "init token");
  await rejectsWith(admin.rotateToken(`${prefix}-none`), 404, `Token '${prefix}-none' doesn't exist`, "unknown");
  checks.push("rotate-token");

  const far = await admin.createToken(`${prefix}-far`, {
    permissions: { fullAccess: true }, ipAllowlist: ["203.0.113.10"],
  });
  await rejectsWith(new Client(url, { apiToken: far }).me(), 401,
    "Token is not allowed for client IP 127.0.0.1", "allowlist");
  await rejectsWith(admin.createToken(`${prefix}-zero`, { permissions: {}, ttl: 0 }), 422,
    "Token TTL must be greater than zero", "ttl 0");
  checks.push("refusals");

  for (const removed of [name, `${prefix}-plain`, `${prefix}-far`]) {
    await admin.deleteToken(removed);
  }
  checks.push("cleanup");
  return { checks, facts };
}

report(main, () => checks);
