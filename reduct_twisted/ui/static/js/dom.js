// Small DOM and formatting helpers shared by the console's views.

/** Build an element: h("button", {class: "x", onclick: f}, "text", child...). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key in el && typeof value !== "string") el[key] = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

/** Replace the children of el. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

const UNITS = ["B", "KB", "MB", "GB", "TB", "PB"];

/** 1234567 -> "1.2 MB" (decimal units, as upstream's console). */
export function bytes(n) {
  n = Number(n || 0);
  let i = 0;
  while (n >= 1000 && i < UNITS.length - 1) { n /= 1000; i += 1; }
  return (i === 0 ? String(n) : n.toFixed(1)) + " " + UNITS[i];
}

/** A time in µs since the epoch as ISO 8601 (UTC, µs kept). */
export function isoTime(us) {
  const big = BigInt(us);
  const ms = Number(big / 1000n);
  const rest = String(big % 1000000n).padStart(6, "0");
  const iso = new Date(ms).toISOString();
  return iso.slice(0, 19) + "." + rest + "Z";
}

/** "" when a bucket or entry holds no record (oldest > latest). */
export function timeRange(oldest, latest, count) {
  if (count === 0 || BigInt(oldest) > BigInt(latest)) return "—";
  return isoTime(oldest) + " … " + isoTime(latest);
}

/** A time typed by the user: µs digits, or an ISO date/time (UTC if no zone). */
export function parseTime(text) {
  text = (text || "").trim();
  if (text === "") return null;
  if (/^\d+$/.test(text)) return BigInt(text);
  const m = /^(.*?)(?:\.(\d{1,6}))?(Z|[+-]\d\d:?\d\d)?$/.exec(text);
  const zone = m[3] || "Z";
  const when = m[1].includes("T") ? m[1] : m[1] + "T00:00:00"; // a date alone: its midnight
  const ms = Date.parse(when + zone);
  if (Number.isNaN(ms)) throw new Error(`Not a time: ${text}`);
  const frac = BigInt((m[2] || "").padEnd(6, "0") || "0");
  return BigInt(ms) * 1000n + frac;
}

/** A status line under a form: kind "ok" or "error". */
export function note(el, text, kind = "ok") {
  fill(el, text);
  el.className = "note " + kind;
  el.setAttribute("role", kind === "error" ? "alert" : "status");
}

export function hex(buffer) {
  return [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** plural(1, "record") -> "1 record", plural(2, "record") -> "2 records". */
export function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}
