// The console's shell: finds the API next to {base}ui/, asks for a token
// when the server wants one, and routes #/... to a view.
import { Api, ApiError } from "./api.js";
import { h, fill, note } from "./dom.js";
import { overview } from "./buckets.js";
import { bucketView } from "./entries.js";
import { tokensView, replicationsView, lifecyclesView, systemView } from "./admin.js";

const base = location.pathname.replace(/ui\/.*$/, "");
const api = new Api(base.endsWith("/") ? base : base + "/");
const main = document.getElementById("main");

function login(message) {
  document.getElementById("nav").hidden = true;
  fill(document.getElementById("who"));
  const input = h("input", { id: "token", type: "password", autocomplete: "off",
    placeholder: "API token", "aria-label": "API token", required: true });
  const status = h("p", { class: "note" });
  const form = h("form", { id: "login", class: "card login", onsubmit: async (event) => {
    event.preventDefault();
    api.token = input.value.trim();
    try {
      await api.get("/me");
      route();
    } catch (err) {
      api.token = "";
      note(status, err.status === 401 ? "Invalid token" : err.message, "error");
    }
  } },
  h("h1", {}, "Sign in"),
  h("p", { class: "muted" }, "This server requires an API token. It is kept in this tab only."),
  input, h("button", { type: "submit" }, "Sign in"), status);
  fill(main, form);
  if (message) note(status, message, "error");
  input.focus();
}

async function whoAmI() {
  const who = document.getElementById("who");
  try {
    const me = await api.get("/me");
    const auth = api.token !== "";
    fill(who, auth ? `Token: ${me.name}` : "Authentication off",
      auth ? h("button", { id: "logout", class: "link", onclick: () => { api.token = ""; login(); } },
        "Sign out") : null);
    return true;
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      login(api.token ? "The token was refused" : null);
      return false;
    }
    throw err;
  }
}

const VIEWS = [
  [/^#\/b\/([^/]+)$/, (view, m) => bucketView(api, view, decodeURIComponent(m[1]))],
  [/^#\/tokens$/, (view) => tokensView(api, view)],
  [/^#\/replications$/, (view) => replicationsView(api, view)],
  [/^#\/lifecycles$/, (view) => lifecyclesView(api, view)],
  [/^#\/system$/, (view) => systemView(api, view)],
];

async function route() {
  try {
    if (!(await whoAmI())) return;
    document.getElementById("nav").hidden = false;
    const hash = location.hash || "#/";
    for (const a of document.querySelectorAll("#nav a")) {
      a.classList.toggle("active", a.getAttribute("href") === hash);
    }
    // Each route renders into its own element: one still loading when the
    // user moves on fills an element no longer on the page.
    const view = h("div", { class: "view" }, h("p", { class: "muted" }, "Loading…"));
    fill(main, view);
    try {
      for (const [pattern, render] of VIEWS) {
        const m = pattern.exec(hash);
        if (m) { await render(view, m); return; }
      }
      await overview(api, view);
    } catch (err) {
      const status = h("p");
      fill(view, status);
      note(status, err.message, "error");
    }
  } catch (err) {
    const status = h("p");
    fill(main, status);
    note(status, err.message, "error");
  }
}

window.addEventListener("hashchange", route);
route();
