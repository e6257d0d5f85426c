// The entry's integrity log (issue #16): its signed head, and an
// in-browser check that a record is in it: the record's bytes hashed
// (WebCrypto SHA-256), its leaf rebuilt from the listing (RFC 8785 JSON),
// the RFC 9162 audit path walked from the leaf hash, the result compared
// with the head's root hash.
import { recordPath } from "./api.js";
import { h, fill, hex, note, isoTime } from "./dom.js";

function logPath(bucket, entry) {
  return recordPath(bucket, entry).replace(/^\/b\//, "/log/");
}

function recordsPath(bucket, entry) {
  return recordPath(bucket, entry).replace(/^\/b\//, "/records/");
}

export async function integrityPanel(api, bucket, entry) {
  const panel = h("section", { class: "card", id: "integrity" }, h("h3", {}, "Integrity log"));
  try {
    const head = await api.get(logPath(bucket, entry));
    panel.append(h("dl", { class: "facts" },
      h("dt", {}, "Tree size"), h("dd", { dataset: { fact: "tree-size" } }, head.tree_size),
      h("dt", {}, "Root hash"), h("dd", { class: "mono", dataset: { fact: "root-hash" } }, head.root_hash),
      h("dt", {}, "Signed at"), h("dd", {}, isoTime(head.timestamp)),
      h("dt", {}, "Key id"), h("dd", { class: "mono" }, head.key_id),
      h("dt", {}, "Signature"), h("dd", { class: "mono small" }, head.signature)));
  } catch (err) {
    panel.append(h("p", { class: "muted" }, err.status === 404 ? err.message : "Log unavailable: " + err.message));
  }
  return panel;
}

/** RFC 8785 canonical JSON of the values a leaf holds (strings, safe integers, objects). */
export function canonical(value) {
  if (value === null || typeof value !== "object") return JSON.stringify(value);
  // Member names sorted by UTF-16 code units: JavaScript's default sort.
  const keys = Object.keys(value).sort();
  return "{" + keys.map((k) => JSON.stringify(k) + ":" + canonical(value[k])).join(",") + "}";
}

async function sha256(...parts) {
  const total = parts.reduce((n, p) => n + p.length, 0);
  const joined = new Uint8Array(total);
  let at = 0;
  for (const p of parts) { joined.set(p, at); at += p.length; }
  return new Uint8Array(await crypto.subtle.digest("SHA-256", joined));
}

function fromHex(text) {
  return new Uint8Array(text.match(/../g).map((b) => parseInt(b, 16)));
}

/** RFC 9162 §2.1.3.2: the root an audit path leads to from a leaf hash, or null. */
export async function rootFromPath(leafIndex, treeSize, leafHash, path) {
  if (leafIndex >= treeSize) return null;
  let fn = leafIndex, sn = treeSize - 1, r = leafHash;
  const one = new Uint8Array([1]);
  for (const p of path) {
    if (sn === 0) return null;
    if (fn % 2 === 1 || fn === sn) {
      r = await sha256(one, p, r);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
      }
    } else {
      r = await sha256(one, r, p);
    }
    fn = Math.floor(fn / 2); sn = Math.floor(sn / 2);
  }
  return sn === 0 ? r : null;
}

export async function verifyInclusion(api, bucket, entry, ts, box) {
  const status = h("p", { class: "note", id: "proof-result" });
  const steps = h("ol", { class: "steps" });
  fill(box, steps, status);
  const step = (text) => steps.append(h("li", {}, text));
  try {
    if (!globalThis.crypto || !crypto.subtle) {
      throw new Error("WebCrypto needs a secure context (HTTPS or localhost)");
    }
    const body = await (await api.raw("GET", recordPath(bucket, entry) + "?ts=" + ts)).arrayBuffer();
    const digest = hex(await sha256(new Uint8Array(body)));
    step(`Content SHA-256 ${digest}`);
    const listing = await api.get(recordsPath(bucket, entry) + "?digest=sha-256:" + digest + "&include_removed=true");
    const item = listing.data.find((x) => String(x.timestamp) === String(ts));
    if (!item) throw new Error("No logged record has this content at this timestamp");
    if (item.digest !== "sha-256:" + digest) throw new Error("The listed digest differs from the content");
    step(`Record number ${item.number}`);
    const head = await api.get(logPath(bucket, entry));
    const proof = await api.get(logPath(bucket, entry) + `?proof=${item.number}&tree_size=${head.tree_size}`);
    const leaf = canonical({ number: item.number, timestamp: item.timestamp, size: item.size,
      content_type: item.content_type, labels: item.labels, digest: item.digest });
    const leafHash = await sha256(new Uint8Array([0]), new TextEncoder().encode(leaf));
    step(`Leaf hash ${hex(leafHash)}`);
    const root = await rootFromPath(proof.leaf_index, proof.tree_size, leafHash, proof.audit_path.map(fromHex));
    const rootHex = root ? hex(root) : "(path does not fit the tree)";
    step(`Root from ${proof.audit_path.length} audit-path hashes: ${rootHex}`);
    if (rootHex !== head.root_hash) {
      throw new Error(`Inclusion check FAILED: the root differs from the head's ${head.root_hash}`);
    }
    note(status, `Inclusion verified: record ${item.number} is in the log of ${head.tree_size} records (root ${head.root_hash.slice(0, 16)}…)`);
  } catch (err) {
    note(status, err.message.startsWith("Inclusion") ? err.message : "Inclusion check FAILED: " + err.message, "error");
  }
}
