// A bucket: its entries as a tree of nested paths, and for the chosen
// entry a chart of records over time, a record browser over a time range
// with an optional `when` condition, record details, upload and removal.
import { bucketPath, recordPath } from "./api.js";
import { h, fill, bytes, isoTime, timeRange, parseTime, note, plural } from "./dom.js";
import { recordsChart } from "./chart.js";
import { integrityPanel, verifyInclusion } from "./integrity.js";

/** Records shown per page of the browser; records the chart counts at most. */
const PAGE = 50;
const CHART_LIMIT = 10000;
/** Records previewed only up to this size. */
const PREVIEW_MAX = 2 * 1000 * 1000;

/** The entries as a tree: {name, path, entry, children: Map}. */
function buildTree(entries) {
  const root = { children: new Map() };
  for (const e of entries) {
    let node = root, path = "";
    for (const part of e.name.split("/")) {
      path = path ? path + "/" + part : part;
      if (!node.children.has(part)) node.children.set(part, { name: part, path, children: new Map() });
      node = node.children.get(part);
    }
    node.entry = e;
  }
  return root;
}

/** Records and the time range of a node and everything below it. */
function totals(node) {
  let count = 0, size = 0, oldest = null, latest = null;
  const visit = (n) => {
    const e = n.entry;
    if (e && e.record_count) {
      count += e.record_count; size += e.size;
      const o = BigInt(e.oldest_record), l = BigInt(e.latest_record);
      if (oldest === null || o < oldest) oldest = o;
      if (latest === null || l > latest) latest = l;
    }
    n.children.forEach(visit);
  };
  visit(node);
  return { count, size, oldest, latest };
}

function treeList(node, select) {
  return h("ul", { class: "tree" }, [...node.children.values()].map((child) => {
    const t = totals(child);
    const label = h("button", { class: "link entry", dataset: { entry: child.path },
      onclick: () => select(child.path) }, child.name);
    return h("li", {}, label,
      h("span", { class: "muted" }, ` ${plural(t.count, "record")}, ${bytes(t.size)}`,
        t.count ? `, ${timeRange(t.oldest, t.latest, t.count)}` : ""),
      child.children.size ? treeList(child, select) : null);
  }));
}

/** Labels from a batch header value's tail: k=v,k2="v, with comma". */
export function parseLabels(text) {
  const labels = {};
  let i = 0;
  while (i < text.length) {
    const eq = text.indexOf("=", i);
    if (eq < 0) break;
    const key = text.slice(i, eq);
    let value, next;
    if (text[eq + 1] === '"') {
      let end = text.indexOf('",', eq + 2);
      if (end < 0) end = text.endsWith('"') ? text.length - 1 : text.length;
      value = text.slice(eq + 2, end);
      next = end + 2;
    } else {
      let end = text.indexOf(",", eq + 1);
      if (end < 0) end = text.length;
      value = text.slice(eq + 1, end);
      next = end + 1;
    }
    labels[key] = value;
    i = next;
  }
  return labels;
}

/** The records (headers only) a query matches: [{ts, size, contentType, labels}]. */
export async function queryHeads(api, bucket, entry, spec, max) {
  const { id } = await api.post(recordPath(bucket, entry) + "/q", { query_type: "QUERY", ...spec });
  const found = [];
  for (;;) {
    const r = await api.raw("HEAD", recordPath(bucket, entry) + "/batch?q=" + id);
    if (r.status === 204) break;
    for (const [name, value] of r.headers) {
      if (!name.startsWith("x-reduct-time-")) continue;
      const first = value.indexOf(","), second = value.indexOf(",", first + 1);
      found.push({
        ts: BigInt(name.slice("x-reduct-time-".length)),
        size: Number(value.slice(0, first)),
        contentType: second < 0 ? value.slice(first + 1) : value.slice(first + 1, second),
        labels: second < 0 ? {} : parseLabels(value.slice(second + 1)),
      });
    }
    if (r.headers.get("x-reduct-last") === "true" || found.length >= max) break;
  }
  found.sort((a, b) => (a.ts < b.ts ? -1 : a.ts > b.ts ? 1 : 0));
  return found.slice(0, max);
}

async function chartPanel(api, bucket, entry, info) {
  const panel = h("section", { class: "card", id: "chart" }, h("h3", {}, "Records over time"));
  if (!info.record_count) { panel.append(h("p", { class: "muted" }, "No records.")); return panel; }
  const start = BigInt(info.oldest_record), stop = BigInt(info.latest_record) + 1n;
  const heads = await queryHeads(api, bucket, entry,
    { start: Number(start), stop: Number(stop), limit: CHART_LIMIT }, CHART_LIMIT);
  panel.append(recordsChart(heads.map((r) => r.ts), start, stop));
  if (heads.length >= CHART_LIMIT) {
    panel.append(h("p", { class: "muted" }, `The first ${CHART_LIMIT} records only.`));
  }
  return panel;
}

function headersLabels(headers) {
  const labels = {};
  for (const [name, value] of headers) {
    if (name.startsWith("x-reduct-label-")) labels[name.slice("x-reduct-label-".length)] = value;
  }
  return labels;
}

async function fetchBlob(api, bucket, entry, ts) {
  const r = await api.raw("GET", recordPath(bucket, entry) + "?ts=" + ts);
  return r.blob();
}

function labelEditor(api, bucket, entry, ts, labels, done) {
  const rows = h("tbody");
  const addRow = (k = "", v = "") => rows.append(h("tr", {},
    h("td", {}, h("input", { class: "label-key", value: k, "aria-label": "Label name" })),
    h("td", {}, h("input", { class: "label-value", value: v, "aria-label": "Label value" })),
    h("td", {}, h("button", { type: "button", class: "secondary",
      onclick: (event) => event.target.closest("tr").remove() }, "×"))));
  Object.entries(labels).forEach(([k, v]) => addRow(k, v));
  const status = h("p", { class: "note" });
  const form = h("form", { id: "labels-form", onsubmit: async (event) => {
    event.preventDefault();
    const headers = {};
    const kept = new Set();
    for (const tr of rows.children) {
      const k = tr.querySelector(".label-key").value.trim().toLowerCase();
      if (!k) continue;
      kept.add(k);
      headers["x-reduct-label-" + k] = tr.querySelector(".label-value").value;
    }
    for (const k of Object.keys(labels)) if (!kept.has(k)) headers["x-reduct-label-" + k] = "";
    try {
      await api.raw("PATCH", recordPath(bucket, entry) + "?ts=" + ts, { headers });
      await done("Labels saved");
    } catch (err) { note(status, err.message, "error"); }
  } }, h("table", { class: "labels" }, rows),
  h("button", { type: "button", class: "secondary", onclick: () => addRow() }, "Add label"),
  h("button", { type: "submit" }, "Save labels"), status);
  return form;
}

async function recordDetail(api, bucket, entry, ts, box, reload) {
  // Only the latest click fills the box (an earlier one may answer later).
  const turn = Symbol("detail");
  box.turn = turn;
  const r = await api.raw("HEAD", recordPath(bucket, entry) + "?ts=" + ts);
  if (box.turn !== turn) return;
  const contentType = r.headers.get("content-type") || "";
  const size = Number(r.headers.get("content-length") || 0);
  const digest = r.headers.get("repr-digest") || "—";
  const labels = headersLabels(r.headers);
  const status = h("p", { class: "note", id: "record-status" });
  const preview = h("div", { class: "preview", id: "preview" });
  const proof = h("div", { id: "proof" });
  fill(box, h("h3", {}, `Record ${isoTime(ts)}`),
    h("dl", { class: "facts" },
      h("dt", {}, "Timestamp"), h("dd", {}, String(ts)),
      h("dt", {}, "Content type"), h("dd", { dataset: { fact: "content-type" } }, contentType),
      h("dt", {}, "Size"), h("dd", {}, bytes(size)),
      h("dt", {}, "Digest"), h("dd", { class: "mono", dataset: { fact: "digest" } }, digest)),
    h("div", { class: "row" },
      h("button", { id: "download", onclick: async () => {
        const blob = await fetchBlob(api, bucket, entry, ts);
        const a = h("a", { href: URL.createObjectURL(blob), download: `${entry.replaceAll("/", "_")}-${ts}` });
        document.body.append(a); a.click(); a.remove();
        setTimeout(() => URL.revokeObjectURL(a.href), 10000);
      } }, "Download"),
      h("button", { id: "verify", class: "secondary", onclick: () =>
        verifyInclusion(api, bucket, entry, ts, proof) }, "Check inclusion proof"),
      h("button", { id: "remove-record", class: "danger", onclick: async () => {
        if (!confirm(`Remove the record at ${ts}?`)) return;
        try { await api.raw("DELETE", recordPath(bucket, entry) + "?ts=" + ts); await reload("Record removed"); }
        catch (err) { note(status, err.message, "error"); }
      } }, "Remove")),
    status, proof,
    h("h4", {}, "Labels"),
    labelEditor(api, bucket, entry, ts, labels, async (text) => {
      await recordDetail(api, bucket, entry, ts, box, reload);
      note(box.querySelector("#record-status"), text);
    }),
    h("h4", {}, "Preview"), preview);
  const kind = contentType.split(";")[0].trim().toLowerCase();
  const textual = kind.startsWith("text/") || kind === "application/json" || kind.endsWith("+json");
  if (size > PREVIEW_MAX || !(kind.startsWith("image/") || textual)) {
    preview.append(h("p", { class: "muted" }, "No preview for this content type or size."));
    return;
  }
  const blob = await fetchBlob(api, bucket, entry, ts);
  if (box.turn !== turn) return;
  if (kind.startsWith("image/")) {
    preview.append(h("img", { src: URL.createObjectURL(blob), alt: "record preview" }));
    return;
  }
  let text = await blob.text();
  if (kind !== "text/plain" && !kind.startsWith("text/")) {
    try { text = JSON.stringify(JSON.parse(text), null, 2); } catch (e) { /* shown as is */ }
  }
  preview.append(h("pre", {}, text));
}

function uploadForm(api, bucket, entry, reload) {
  const status = h("p", { class: "note" });
  const form = h("form", { id: "upload", class: "card", onsubmit: async (event) => {
    event.preventDefault();
    const file = form.elements.file.files[0];
    if (!file) return;
    const headers = { "content-type": file.type || "application/octet-stream" };
    for (const line of form.elements.labels.value.split(/[\n,]/)) {
      const eq = line.indexOf("=");
      if (eq > 0) headers["x-reduct-label-" + line.slice(0, eq).trim()] = line.slice(eq + 1).trim();
    }
    try {
      const ts = parseTime(form.elements.ts.value) ?? BigInt(Date.now()) * 1000n;
      await api.raw("POST", recordPath(bucket, entry) + "?ts=" + ts, { body: file, headers });
      await reload(`Uploaded ${file.name} at ${ts}`);
    } catch (err) { note(status, err.message, "error"); }
  } }, h("h3", {}, "Upload a file as a record"),
  h("div", { class: "row" },
    h("label", {}, "File", h("input", { type: "file", name: "file", required: true })),
    h("label", {}, "Timestamp", h("input", { name: "ts", placeholder: "now (µs or ISO time)" })),
    h("label", {}, "Labels", h("input", { name: "labels", placeholder: "key=value, key2=value" }))),
  h("button", { type: "submit" }, "Upload"), status);
  return form;
}

async function entryPanel(api, bucket, entry, info, box, message) {
  const reload = async (text) => {
    const fresh = await api.get(bucketPath(bucket));
    const e = fresh.entries.find((x) => x.name === entry) || { name: entry, record_count: 0 };
    await entryPanel(api, bucket, entry, e, box, text);
  };
  const status = h("p", { class: "note", id: "entry-status" });
  const results = h("div", { id: "records" });
  const detail = h("div", { id: "record-detail", class: "card" });
  const search = h("form", { id: "browse", class: "card", onsubmit: async (event) => {
    event.preventDefault();
    await browse(search.elements.start.value, search.elements.stop.value, search.elements.when.value);
  } }, h("h3", {}, "Records"),
  h("div", { class: "row" },
    h("label", {}, "From", h("input", { name: "start", placeholder: "oldest (µs or ISO)" })),
    h("label", {}, "To", h("input", { name: "stop", placeholder: "latest" })),
    h("label", { class: "wide" }, "when", h("input", { name: "when", placeholder: '{"&label": {"$eq": "value"}}' }))),
  h("button", { type: "submit" }, "Query"), results);
  const browse = async (startText, stopText, whenText) => {
    try {
      const spec = { limit: PAGE };
      const start = parseTime(startText), stop = parseTime(stopText);
      if (start !== null) spec.start = Number(start);
      if (stop !== null) spec.stop = Number(stop);
      if (whenText && whenText.trim()) spec.when = JSON.parse(whenText);
      const heads = await queryHeads(api, bucket, entry, spec, PAGE);
      fill(results, heads.length === 0 ? h("p", { class: "muted" }, "No records match.") :
        h("table", { id: "record-table" },
          h("thead", {}, h("tr", {}, ["Time", "Content type", "Size", "Labels"].map((t) => h("th", {}, t)))),
          h("tbody", {}, heads.map((r) => h("tr", { dataset: { ts: String(r.ts) } },
            h("td", {}, h("button", { class: "link", onclick: () =>
              recordDetail(api, bucket, entry, r.ts, detail, reload).catch((err) => note(status, err.message, "error")) },
            isoTime(r.ts))),
            h("td", {}, r.contentType), h("td", { class: "num" }, bytes(r.size)),
            h("td", {}, Object.entries(r.labels).map(([k, v]) => h("span", { class: "tag" }, `${k}=${v}`))))))),
        heads.length === PAGE ? h("p", { class: "muted" }, `${PAGE} records shown. `,
          h("button", { type: "button", class: "secondary", id: "next-page", onclick: () => {
            // The next page starts after the last record shown (same range end and condition).
            search.elements.start.value = String(heads[heads.length - 1].ts + 1n);
            return browse(search.elements.start.value, stopText, whenText);
          } }, `Next ${PAGE}`)) : null);
    } catch (err) { note(status, err instanceof SyntaxError ? "when: " + err.message : err.message, "error"); }
  };
  const turn = Symbol("entry");
  box.turn = turn;
  const chart = await chartPanel(api, bucket, entry, info);
  const integrity = await integrityPanel(api, bucket, entry);
  if (box.turn !== turn) return; // another entry was chosen meanwhile
  fill(box, h("h2", {}, `Entry ${entry}`),
    h("p", { class: "muted" }, `${plural(info.record_count, "record")}, ${bytes(info.size || 0)}, `,
      timeRange(info.oldest_record, info.latest_record, info.record_count)),
    h("button", { class: "danger", id: "remove-entry", onclick: async () => {
      if (!confirm(`Remove entry '${entry}' and all its records?`)) return;
      try { await api.raw("DELETE", recordPath(bucket, entry)); location.reload(); }
      catch (err) { note(status, err.message, "error"); }
    } }, "Remove entry"),
    status, chart, integrity,
    search, detail, uploadForm(api, bucket, entry, reload));
  if (message) note(status, message);
  if (info.record_count) await browse("", "", "");
}

export async function bucketView(api, main, bucket) {
  const data = await api.get(bucketPath(bucket));
  const panel = h("div", { id: "entry-panel" });
  const select = (path) => {
    const e = data.entries.find((x) => x.name === path) || { name: path, record_count: 0 };
    for (const b of main.querySelectorAll("button.entry")) b.classList.toggle("active", b.dataset.entry === path);
    entryPanel(api, bucket, path, e, panel).catch((err) => fill(panel, h("p", { class: "note error" }, err.message)));
  };
  const s = data.settings;
  fill(main, h("p", {}, h("a", { href: "#/" }, "← Buckets")),
    h("section", { class: "card" }, h("h1", {}, bucket),
      h("p", { class: "muted" }, `${data.info.entry_count} entries, ${bytes(data.info.size)}, quota ${s.quota_type}`,
        s.quota_type !== "NONE" ? ` ${bytes(s.quota_size)}` : ""),
      data.entries.length ? treeList(buildTree(data.entries), select) : h("p", { class: "muted" }, "No entries yet."),
      h("form", { class: "row", onsubmit: (event) => { event.preventDefault(); select(event.target.elements.entry.value.trim()); } },
        h("label", {}, "New entry", h("input", { name: "entry", required: true, placeholder: "path/to/entry" })),
        h("button", { type: "submit", class: "secondary" }, "Open"))),
    panel);
}
