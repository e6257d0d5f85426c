// Tokens, replications, lifecycles and the $system events.
import { bucketPath, recordPath } from "./api.js";
import { h, fill, note, isoTime } from "./dom.js";
import { queryHeads } from "./entries.js";

const lines = (text) => text.split(/[\s,]+/).map((s) => s.trim()).filter(Boolean);

function jsonField(name, label, placeholder) {
  return h("label", { class: "wide" }, label, h("textarea", { name, rows: 3, placeholder }));
}

function parseJsonField(form, name) {
  const text = form.elements[name].value.trim();
  if (!text) return undefined;
  try { return JSON.parse(text); } catch (err) { throw new Error(`${name}: ${err.message}`); }
}

// -- tokens -----------------------------------------------------------------

function showSecret(box, name, value) {
  fill(box, h("div", { class: "secret", role: "status" },
    h("p", {}, `Token '${name}': copy it now, it is not shown again.`),
    h("code", { id: "token-value" }, value),
    h("button", { class: "secondary", onclick: () => navigator.clipboard?.writeText(value) }, "Copy")));
}

export async function tokensView(api, main) {
  const { tokens } = await api.get("/tokens");
  const secret = h("div", { id: "secret" });
  const status = h("p", { class: "note" });
  const reload = async (text) => { await tokensView(api, main); if (text) note(main.querySelector(".note"), text); };
  const form = h("form", { id: "create-token", class: "card", onsubmit: async (event) => {
    event.preventDefault();
    const name = form.elements.name.value.trim();
    const permissions = { full_access: form.elements.full_access.checked,
      read: lines(form.elements.read.value), write: lines(form.elements.write.value) };
    const body = { permissions };
    if (form.elements.ttl.value) body.ttl = Number(form.elements.ttl.value);
    try {
      const created = await api.post("/tokens/" + encodeURIComponent(name), body);
      await reload(`Token '${name}' created`);
      showSecret(main.querySelector("#secret"), name, created.value);
    } catch (err) { note(status, err.message, "error"); }
  } }, h("h2", {}, "New token"),
  h("div", { class: "row" },
    h("label", {}, "Name", h("input", { name: "name", required: true })),
    h("label", { class: "check" }, h("input", { type: "checkbox", name: "full_access" }), "Full access"),
    h("label", {}, "Read buckets", h("input", { name: "read", placeholder: "b1, b2" })),
    h("label", {}, "Write buckets", h("input", { name: "write", placeholder: "b1" })),
    h("label", {}, "TTL (s)", h("input", { name: "ttl", type: "number", min: "1", placeholder: "none" }))),
  h("button", { type: "submit" }, "Create token"), status);
  const rows = tokens.map((t) => {
    const p = t.permissions || {};
    return h("tr", { dataset: { token: t.name } },
      h("td", {}, t.name),
      h("td", {}, p.full_access ? "full access" : [
        p.read?.length ? `read: ${p.read.join(", ")}` : "", p.write?.length ? ` write: ${p.write.join(", ")}` : ""]),
      h("td", {}, t.created_at || ""),
      h("td", {}, t.expires_at || "never", t.is_expired ? " (expired)" : ""),
      h("td", {}, t.last_access || "—"),
      h("td", { class: "actions" }, t.is_provisioned ? h("span", { class: "muted" }, "provisioned") : [
        h("button", { class: "secondary", onclick: async () => {
          try {
            const rotated = await api.post(`/tokens/${encodeURIComponent(t.name)}/rotate`, {});
            showSecret(secret, t.name, rotated.value);
          } catch (err) { note(status, err.message, "error"); }
        } }, "Rotate"),
        h("button", { class: "danger", onclick: async () => {
          if (!confirm(`Remove token '${t.name}'?`)) return;
          try { await api.del("/tokens/" + encodeURIComponent(t.name)); await reload(`Token '${t.name}' removed`); }
          catch (err) { note(status, err.message, "error"); }
        } }, "Remove")]));
  });
  fill(main, h("section", { class: "card" }, h("h1", {}, "Tokens"), h("p", { class: "note" }), secret,
    h("table", { id: "tokens" }, h("thead", {}, h("tr", {},
      ["Name", "Permissions", "Created", "Expires", "Last access", ""].map((x) => h("th", {}, x)))),
    h("tbody", {}, rows))), form);
}

// -- replications -----------------------------------------------------------

export async function replicationsView(api, main) {
  const { replications } = await api.get("/replications");
  const details = await Promise.all(replications.map((r) =>
    api.get("/replications/" + encodeURIComponent(r.name)).catch(() => null)));
  const status = h("p", { class: "note" });
  const reload = async (text) => { await replicationsView(api, main); if (text) note(main.querySelector(".note"), text); };
  const cards = replications.map((r, i) => {
    const d = details[i] || {};
    const hourly = d.diagnostics?.hourly || { ok: 0, errored: 0, errors: {} };
    const s = d.settings || {};
    return h("div", { class: "card replication", dataset: { replication: r.name } },
      h("h3", {}, r.name, " ", h("span", { class: "tag" }, r.is_active ? "active" : "inactive"),
        d.info?.mode ? h("span", { class: "tag" }, d.info.mode) : null),
      h("p", {}, `${s.src_bucket} → ${s.dst_host} ${s.dst_bucket}; entries: ${(s.entries || []).join(", ") || "all"}`),
      h("p", { dataset: { fact: "diagnostics" } },
        `Pending records: ${r.pending_records}. Last hour: ${hourly.ok} ok, ${hourly.errored} errored.`),
      Object.keys(hourly.errors || {}).length ? h("ul", {}, Object.entries(hourly.errors).map(([code, e]) =>
        h("li", {}, `${code}: ${e.count} × ${e.last_message}`))) : null,
      r.is_provisioned ? null : h("button", { class: "danger", onclick: async () => {
        if (!confirm(`Remove replication '${r.name}'?`)) return;
        try { await api.del("/replications/" + encodeURIComponent(r.name)); await reload(`Replication '${r.name}' removed`); }
        catch (err) { note(status, err.message, "error"); }
      } }, "Remove"));
  });
  const form = h("form", { id: "create-replication", class: "card", onsubmit: async (event) => {
    event.preventDefault();
    const name = form.elements.name.value.trim();
    try {
      const body = { src_bucket: form.elements.src_bucket.value.trim(), dst_bucket: form.elements.dst_bucket.value.trim(),
        dst_host: form.elements.dst_host.value.trim(), entries: lines(form.elements.entries.value) };
      if (form.elements.dst_token.value) body.dst_token = form.elements.dst_token.value;
      const when = parseJsonField(form, "when");
      if (when !== undefined) body.when = when;
      await api.post("/replications/" + encodeURIComponent(name), body);
      await reload(`Replication '${name}' created`);
    } catch (err) { note(status, err.message, "error"); }
  } }, h("h2", {}, "New replication"),
  h("div", { class: "row" },
    h("label", {}, "Name", h("input", { name: "name", required: true })),
    h("label", {}, "Source bucket", h("input", { name: "src_bucket", required: true })),
    h("label", {}, "Destination URL", h("input", { name: "dst_host", required: true, placeholder: "https://host:8383" })),
    h("label", {}, "Destination bucket", h("input", { name: "dst_bucket", required: true })),
    h("label", {}, "Destination token", h("input", { name: "dst_token", type: "password" })),
    h("label", {}, "Entries", h("input", { name: "entries", placeholder: "all" })),
    jsonField("when", "when", '{"&label": {"$eq": "x"}}')),
  h("button", { type: "submit" }, "Create replication"), status);
  fill(main, h("section", {}, h("h1", {}, "Replications"), h("p", { class: "note" }),
    cards.length ? cards : h("p", { class: "muted" }, "No replications.")), form);
}

// -- lifecycles -------------------------------------------------------------

export async function lifecyclesView(api, main) {
  const { lifecycles } = await api.get("/lifecycles");
  const details = await Promise.all(lifecycles.map((l) =>
    api.get("/lifecycles/" + encodeURIComponent(l.name)).catch(() => null)));
  const status = h("p", { class: "note" });
  const reload = async (text) => { await lifecyclesView(api, main); if (text) note(main.querySelector(".note"), text); };
  const rows = lifecycles.map((l, i) => {
    const s = details[i]?.settings || {};
    return h("tr", { dataset: { lifecycle: l.name } },
      h("td", {}, l.name), h("td", {}, l.type || s.type), h("td", {}, s.bucket || ""),
      h("td", {}, (s.entries || []).join(", ") || "all"), h("td", {}, s.older_than || ""),
      h("td", {}, s.interval || ""), h("td", {}, l.mode || s.mode || ""), h("td", {}, l.last_run || "never"),
      h("td", { class: "actions" }, l.is_provisioned ? h("span", { class: "muted" }, "provisioned") : [
        h("select", { "aria-label": "Mode", onchange: async (event) => {
          try {
            await api.json("PATCH", `/lifecycles/${encodeURIComponent(l.name)}/mode`, { mode: event.target.value });
            await reload(`Lifecycle '${l.name}' is ${event.target.value}`);
          } catch (err) { note(status, err.message, "error"); }
        } }, ["enabled", "disabled", "dry_run"].map((m) => h("option", { value: m, selected: m === (l.mode || s.mode) }, m))),
        h("button", { class: "danger", onclick: async () => {
          if (!confirm(`Remove lifecycle '${l.name}'?`)) return;
          try { await api.del("/lifecycles/" + encodeURIComponent(l.name)); await reload(`Lifecycle '${l.name}' removed`); }
          catch (err) { note(status, err.message, "error"); }
        } }, "Remove")]));
  });
  const form = h("form", { id: "create-lifecycle", class: "card", onsubmit: async (event) => {
    event.preventDefault();
    const name = form.elements.name.value.trim();
    try {
      const body = { type: form.elements.type.value, bucket: form.elements.bucket.value.trim(),
        entries: lines(form.elements.entries.value), older_than: form.elements.older_than.value.trim(),
        mode: form.elements.mode.value };
      if (form.elements.interval.value.trim()) body.interval = form.elements.interval.value.trim();
      const when = parseJsonField(form, "when");
      if (when !== undefined) body.when = when;
      await api.post("/lifecycles/" + encodeURIComponent(name), body);
      await reload(`Lifecycle '${name}' created`);
    } catch (err) { note(status, err.message, "error"); }
  } }, h("h2", {}, "New lifecycle"),
  h("div", { class: "row" },
    h("label", {}, "Name", h("input", { name: "name", required: true })),
    h("label", {}, "Type", h("select", { name: "type" }, h("option", {}, "delete"), h("option", {}, "compress"))),
    h("label", {}, "Bucket", h("input", { name: "bucket", required: true })),
    h("label", {}, "Entries", h("input", { name: "entries", placeholder: "all, or name / prefix*" })),
    h("label", {}, "Older than", h("input", { name: "older_than", required: true, placeholder: "30d" })),
    h("label", {}, "Interval", h("input", { name: "interval", placeholder: "3600s" })),
    h("label", {}, "Mode", h("select", { name: "mode" }, ["enabled", "disabled", "dry_run"].map((m) => h("option", {}, m)))),
    jsonField("when", "when", '{"&label": {"$eq": "x"}}')),
  h("button", { type: "submit" }, "Create lifecycle"), status);
  fill(main, h("section", { class: "card" }, h("h1", {}, "Lifecycles"), h("p", { class: "note" }),
    lifecycles.length ? h("table", { id: "lifecycles" }, h("thead", {}, h("tr", {},
      ["Name", "Type", "Bucket", "Entries", "Older than", "Interval", "Mode", "Last run", ""].map((x) => h("th", {}, x)))),
    h("tbody", {}, rows)) : h("p", { class: "muted" }, "No lifecycles.")), form);
}

// -- $system events ---------------------------------------------------------

const EVENTS_SHOWN = 20;

export async function systemView(api, main) {
  let bucket;
  try { bucket = await api.get(bucketPath("$system")); } catch (err) {
    fill(main, h("section", { class: "card" }, h("h1", {}, "System events"),
      h("p", { class: "muted", id: "no-system" }, err.status === 404
        ? "No $system bucket: the server writes events there when system events are enabled."
        : err.message)));
    return;
  }
  const sections = [];
  for (const e of bucket.entries.filter((x) => x.record_count)) {
    // The newest events: their times from a bounded query, then their bodies.
    const heads = await queryHeads(api, "$system", e.name,
      { start: 0, stop: Number(BigInt(e.latest_record) + 1n), limit: 10000 }, 10000);
    const events = [];
    for (const head of heads.slice(-EVENTS_SHOWN)) {
      const r = await api.raw("GET", recordPath("$system", e.name) + "?ts=" + head.ts);
      events.push({ ts: head.ts, body: await r.text() });
    }
    sections.push(h("div", { class: "card", dataset: { stream: e.name } }, h("h3", {}, e.name,
      h("span", { class: "muted" }, ` ${e.record_count} events`)),
    h("table", { class: "events" }, h("tbody", {}, events.reverse().map((ev) => {
      let text = ev.body;
      try { text = JSON.stringify(JSON.parse(ev.body)); } catch (err) { /* as is */ }
      return h("tr", {}, h("td", { class: "nowrap" }, isoTime(ev.ts)), h("td", { class: "mono small" }, text));
    })))));
  }
  fill(main, h("section", {}, h("h1", {}, "System events"),
    h("p", { class: "muted" }, h("a", { href: "#/b/%24system" }, "Browse the $system bucket")),
    sections.length ? sections : h("p", { class: "muted" }, "No events yet.")));
}
