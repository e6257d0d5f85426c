// The console's HTTP client: same origin, the API under {base}api/v1, the
// token (if any) from the tab's session storage sent as a Bearer token.

const TOKEN_KEY = "reduct-twisted-token";

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail || `HTTP ${status}`);
    this.status = status;
  }
}

export class Api {
  constructor(base) {
    this.base = base; // ends in "/"
    this.root = base + "api/v1";
  }

  get token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }
  set token(value) {
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
  }

  /** fetch(base + "api/v1" + path); throws ApiError on a status >= 400. */
  async raw(method, path, { body, headers = {}, okStatuses = [] } = {}) {
    const all = { ...headers };
    if (this.token) all.authorization = "Bearer " + this.token;
    const response = await fetch(this.root + path, { method, body, headers: all });
    if (response.status >= 400 && !okStatuses.includes(response.status)) {
      let detail = response.headers.get("x-reduct-error");
      if (!detail) {
        try { detail = (await response.json()).detail; } catch (e) { detail = null; }
      }
      throw new ApiError(response.status, detail);
    }
    return response;
  }

  async json(method, path, body) {
    const init = {};
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers = { "content-type": "application/json" };
    }
    const response = await this.raw(method, path, init);
    const text = await response.text();
    return text ? JSON.parse(text) : null;
  }

  get(path) { return this.json("GET", path); }
  post(path, body) { return this.json("POST", path, body === undefined ? {} : body); }
  put(path, body) { return this.json("PUT", path, body); }
  del(path) { return this.json("DELETE", path); }
}

/** "/a b/c" -> "/a%20b/c": each segment of an entry path encoded. */
export function entryPath(name) {
  return name.split("/").map(encodeURIComponent).join("/");
}

export function bucketPath(bucket) {
  return "/b/" + encodeURIComponent(bucket);
}

export function recordPath(bucket, entry) {
  return bucketPath(bucket) + "/" + entryPath(entry);
}
