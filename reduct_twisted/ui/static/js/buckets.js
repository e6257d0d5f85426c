// Server info and usage; the bucket list with create, edit, rename, remove.
import { bucketPath } from "./api.js";
import { h, fill, bytes, timeRange, note } from "./dom.js";

const QUOTA_TYPES = ["NONE", "FIFO", "HARD"];

function duration(seconds) {
  const d = Math.floor(seconds / 86400), hr = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
  return (d ? `${d}d ` : "") + (d || hr ? `${hr}h ` : "") + `${m}m ${s}s`;
}

function infoCard(info, records) {
  const rows = [
    ["Version", info.version],
    ["Buckets", info.bucket_count],
    ["Usage", bytes(info.usage)],
    ["Records", records],
    ["Uptime", duration(info.uptime)],
    ["Time range", timeRange(info.oldest_record, info.latest_record, info.usage ? 1 : 0)],
  ];
  return h("section", { class: "card", id: "server-info" },
    h("h2", {}, "Server"),
    h("dl", { class: "facts" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", { dataset: { fact: k } }, v)])));
}

/** The settings fields of a bucket form, filled from settings. */
function settingsFields(settings = {}) {
  const quotaType = h("select", { name: "quota_type", "aria-label": "Quota type" },
    QUOTA_TYPES.map((t) => h("option", { value: t, selected: t === (settings.quota_type || "NONE") }, t)));
  const number = (name, label, value) => h("label", {}, label,
    h("input", { name, type: "number", min: "0", value: value ?? "", placeholder: "default" }));
  return [
    h("label", {}, "Quota type", quotaType),
    number("quota_size", "Quota size (bytes)", settings.quota_size),
    number("max_block_size", "Max block size", settings.max_block_size),
    number("max_block_records", "Max block records", settings.max_block_records),
  ];
}

function readSettings(form) {
  const out = { quota_type: form.elements.quota_type.value };
  for (const name of ["quota_size", "max_block_size", "max_block_records"]) {
    const v = form.elements[name].value;
    if (v !== "") out[name] = Number(v);
  }
  return out;
}

function createForm(api, refresh) {
  const status = h("p", { class: "note" });
  const form = h("form", { id: "create-bucket", class: "card", onsubmit: async (event) => {
    event.preventDefault();
    const name = form.elements.name.value.trim();
    try {
      await api.post(bucketPath(name), readSettings(form));
      await refresh(`Bucket '${name}' created`);
    } catch (err) { note(status, err.message, "error"); }
  } },
  h("h2", {}, "New bucket"),
  h("div", { class: "row" },
    h("label", {}, "Name", h("input", { name: "name", required: true, pattern: "[A-Za-z0-9_\\-]+" })),
    settingsFields()),
  h("button", { type: "submit" }, "Create bucket"), status);
  return form;
}

function editDialog(api, bucket, settings, refresh) {
  const status = h("p", { class: "note" });
  const form = h("form", { class: "inline-form", dataset: { edit: bucket }, onsubmit: async (event) => {
    event.preventDefault();
    try {
      await api.put(bucketPath(bucket), readSettings(form));
      await refresh(`Bucket '${bucket}' updated`);
    } catch (err) { note(status, err.message, "error"); }
  } }, h("div", { class: "row" }, settingsFields(settings)),
  h("button", { type: "submit" }, "Save"),
  h("button", { type: "button", class: "secondary", onclick: () => form.remove() }, "Cancel"), status);
  return form;
}

function renameForm(api, bucket, refresh) {
  const status = h("p", { class: "note" });
  const form = h("form", { class: "inline-form", dataset: { rename: bucket }, onsubmit: async (event) => {
    event.preventDefault();
    const target = form.elements.new_name.value.trim();
    try {
      await api.put(bucketPath(bucket) + "/rename", { new_name: target });
      await refresh(`Bucket '${bucket}' renamed to '${target}'`);
    } catch (err) { note(status, err.message, "error"); }
  } }, h("label", {}, "New name", h("input", { name: "new_name", required: true, value: bucket })),
  h("button", { type: "submit" }, "Rename"),
  h("button", { type: "button", class: "secondary", onclick: () => form.remove() }, "Cancel"), status);
  return form;
}

export async function overview(api, main, message) {
  const [info, list] = await Promise.all([api.get("/info"), api.get("/list")]);
  // Record counts and settings: one GET per bucket (the list has neither).
  const details = await Promise.all(list.buckets.map((b) =>
    api.get(bucketPath(b.name)).catch(() => null)));
  const refresh = (text) => overview(api, main, text);
  const status = h("p", { class: "note", id: "buckets-status" });
  let total = 0;
  const rows = list.buckets.map((b, i) => {
    const d = details[i];
    const records = d ? d.entries.reduce((n, e) => n + (e.record_count || 0), 0) : null;
    total += records || 0;
    const s = d ? d.settings : {};
    const quota = s.quota_type && s.quota_type !== "NONE" ? `${s.quota_type} ${bytes(s.quota_size)}` : "none";
    const actions = h("td", { class: "actions" });
    const row = h("tr", { dataset: { bucket: b.name } },
      h("td", {}, h("a", { href: "#/b/" + encodeURIComponent(b.name) }, b.name)),
      h("td", { class: "num" }, bytes(b.size)),
      h("td", { class: "num" }, b.entry_count),
      h("td", { class: "num", dataset: { col: "records" } }, records ?? "?"),
      h("td", {}, timeRange(b.oldest_record, b.latest_record, records ?? 1)),
      h("td", { dataset: { col: "quota" } }, quota),
      h("td", {}, b.status || "READY"), actions);
    const below = h("tr", { class: "sub" }, h("td", { colspan: 8 }));
    const open = (form) => fill(below.firstChild, form);
    actions.append(
      h("button", { class: "secondary", onclick: () => open(editDialog(api, b.name, s, refresh)) }, "Edit"),
      h("button", { class: "secondary", onclick: () => open(renameForm(api, b.name, refresh)) }, "Rename"),
      h("button", { class: "danger", onclick: async () => {
        if (!confirm(`Remove bucket '${b.name}' and all its data?`)) return;
        try { await api.del(bucketPath(b.name)); await refresh(`Bucket '${b.name}' removed`); }
        catch (err) { note(status, err.message, "error"); }
      } }, "Remove"));
    return [row, below];
  });
  fill(main,
    infoCard(info, total),
    h("section", { class: "card" },
      h("h2", {}, "Buckets"), status,
      list.buckets.length === 0 ? h("p", { class: "muted" }, "No buckets yet.") :
        h("table", { id: "buckets" },
          h("thead", {}, h("tr", {}, ["Name", "Size", "Entries", "Records", "Time range", "Quota", "Status", ""]
            .map((t) => h("th", {}, t)))),
          h("tbody", {}, rows))),
    createForm(api, refresh));
  if (message) note(status, message);
}
