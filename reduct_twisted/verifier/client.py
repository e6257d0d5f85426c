"""
A small blocking HTTP/1.1 client for the verifier: one keep-alive
connection to the server (``http.client``), TLS through ``ssl`` (``insecure``
skips certificate checks), the token as ``Authorization: Bearer``.

Every problem the verifier cannot blame on the data (refused or dropped
connections, timeouts, 401/403, 5xx, unparsable JSON, a ``Link`` to another
server) is raised as :class:`ClientError` with a one-line message; the
command answers those with exit status 2.  404 is :class:`NotFound` and
409 :class:`Conflict` (an entry log the server cannot read), which callers
may turn into a check failure.
"""

import http.client
import json
import re
import ssl
from urllib.parse import quote, urlencode, urljoin, urlsplit

from reduct_twisted import __version__

USER_AGENT = f"reduct-twisted-verify/{__version__}"

_LINK = re.compile(r'<([^>]*)>\s*((?:;\s*[^;,]*)*)')


class ClientError(Exception):
    """The server could not be asked or did not answer sensibly (exit 2)."""


class NotFound(ClientError):
    """The server answered 404."""


class Conflict(ClientError):
    """The server answered 409 (e.g. it cannot read an entry's log: a newer format)."""


def entry_path(entry: str) -> str:
    """An entry name (maybe nested, ``a/b``) as a URL path, segments quoted."""
    return "/".join(quote(part, safe="") for part in entry.split("/"))


def parse_links(header: str) -> dict:
    """``{rel: url}`` of an RFC 8288 ``Link`` header (first of each rel)."""
    found = {}
    for match in _LINK.finditer(header or ""):
        url, params = match.group(1), match.group(2)
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "rel":
                for rel in value.strip().strip('"').split():
                    found.setdefault(rel.lower(), url)
    return found


class Response:
    """Status, headers (lower-case names) and, for streamed bodies, the open response."""

    def __init__(self, status: int, headers: dict, raw):
        self.status = status
        self.headers = headers
        self.raw = raw

    def read_chunks(self, size: int = 1 << 16):
        """Yield the body ``size`` bytes at a time (never whole in memory)."""
        while True:
            try:
                chunk = self.raw.read(size)
            except (OSError, http.client.HTTPException) as exc:
                raise ClientError(f"reading a body failed: {exc}") from None
            if not chunk:
                return
            yield chunk


class Client:
    """Requests against one server: ``base`` is its URL with the API base path."""

    def __init__(
        self, base: str, token: str | None = None, insecure: bool = False, timeout: float = 30.0, cafile: str | None = None
    ):
        if "://" not in base:
            base = "http://" + base
        parts = urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ClientError(f"not an http(s) URL: {base}")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if self.scheme == "https" else 80)
        path = parts.path if parts.path.endswith("/") else parts.path + "/"
        self.base = f"{self.scheme}://{parts.netloc}{path}"
        self.base_path = path
        self.token = token
        self.timeout = timeout
        self._context = None
        if self.scheme == "https":
            try:
                self._context = ssl.create_default_context(cafile=cafile)
            except (OSError, ssl.SSLError) as exc:
                raise ClientError(f"cannot load the CA file {cafile}: {exc}") from None
            if insecure:
                self._context.check_hostname = False
                self._context.verify_mode = ssl.CERT_NONE
        self._conn = None

    # -- connection -----------------------------------------------------------------

    def _connect(self):
        if self._conn is None:
            if self.scheme == "https":
                self._conn = http.client.HTTPSConnection(
                    self.host, self.port, timeout=self.timeout, context=self._context
                )
            else:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _send(self, target: str):
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        # One retry on a fresh connection: the server may have closed an idle keep-alive one.
        for attempt in (1, 2):
            conn = self._connect()
            try:
                conn.request("GET", target, headers=headers)
                return conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self.close()
                if attempt == 2:
                    raise ClientError(f"{self.host}:{self.port} closed the connection: {exc}") from None
            except TimeoutError:
                self.close()
                raise ClientError(f"{self.host}:{self.port} did not answer within {self.timeout:g} s") from None
            except ssl.SSLError as exc:
                self.close()
                raise ClientError(f"TLS with {self.host}:{self.port} failed: {exc.reason or exc}") from None
            except OSError as exc:
                self.close()
                raise ClientError(f"cannot reach {self.host}:{self.port}: {exc.strerror or exc}") from None

    # -- requests -------------------------------------------------------------------

    def target(self, path: str, query: dict | None = None) -> str:
        """The request target for ``path`` (relative to the API base) and a query."""
        target = self.base_path + path
        if query:
            target += "?" + urlencode(query)
        return target

    def same_origin(self, url: str) -> str:
        """The request target of an absolute ``url`` on this server (else ClientError)."""
        full = urljoin(self.base, url)
        parts = urlsplit(full)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if (parts.scheme, parts.hostname, port) != (self.scheme, self.host, self.port):
            raise ClientError(f"the server links to another origin ({full}); not following it")
        return parts.path + ("?" + parts.query if parts.query else "")

    def get(self, target: str) -> Response:
        """``GET target``; a 2xx response is returned with its body unread."""
        raw = self._send(target)
        headers = {k.lower(): v for k, v in raw.getheaders()}
        if 200 <= raw.status < 300:
            return Response(raw.status, headers, raw)
        detail = headers.get("x-reduct-error") or raw.reason
        try:
            raw.read()
        except (OSError, http.client.HTTPException):
            self.close()
        message = f"GET {target}: HTTP {raw.status} {detail}".rstrip()
        if raw.status == 404:
            raise NotFound(message)
        if raw.status == 409:
            raise Conflict(message)
        if raw.status in (401, 403):
            raise ClientError(message + (" (is the token right?)" if self.token else " (no token given: --token or RS_API_TOKEN)"))
        raise ClientError(message)

    def get_json(self, target: str, limit: int = 64 << 20):
        """``(json body, headers)`` of ``GET target``."""
        response = self.get(target)
        return self.read_json(response, f"GET {target}", limit), response.headers

    def read_json(self, response, what: str, limit: int, empty=ClientError):
        """
        The JSON body of ``response`` (at most ``limit`` bytes; ``what``
        names the request in errors); an empty body is ``empty`` (raised if
        it is an exception class).
        """
        try:
            body = response.raw.read(limit + 1)
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise ClientError(f"{what}: reading the answer failed: {exc}") from None
        if len(body) > limit:
            self.close()
            raise ClientError(f"{what}: the answer is larger than {limit} bytes")
        if not body and not (isinstance(empty, type) and issubclass(empty, Exception)):
            return empty
        try:
            return json.loads(body)
        except ValueError:
            raise ClientError(f"{what}: the answer is not JSON") from None
