"""
A local HTTP server speaking the issue #16 wire shapes (contract 5), for
the verifier's unit tests.

Its log is built with the test-side reference (tests/rfc9162.py: MTH, PATH,
PROOF, the contract-4 leaf), never with the verifier's own code, and signed
with a fresh Ed25519 key.  It runs ``http.server`` in a thread (the
verifier is a blocking client); knobs let a test tamper with one answer at
a time: flip a content byte, corrupt an audit path, sign badly, drop the
``repr-digest`` header, serve another history.
"""

import base64
import hashlib
import http.server
import json
import secrets
import ssl
import threading
from urllib.parse import parse_qs, quote, unquote, urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests import rfc9162 as ref


class FakeRecord:
    def __init__(self, number, timestamp, content, content_type="application/octet-stream", labels=None):
        self.number = number
        self.timestamp = timestamp
        self.content = content
        self.content_type = content_type
        self.labels = dict(labels or {})
        self.digest = hashlib.sha256(content).digest()
        self.state = "stored"
        self.listed_digest = True  # False: listed with "digest": null

    def leaf(self):
        # A record listed with "digest": null was logged so: its leaf has the null.
        digest = self.digest if self.listed_digest else None
        return ref.leaf(self.number, self.timestamp, len(self.content), self.content_type, self.labels, digest)

    def item(self):
        return {
            "number": self.number,
            "timestamp": self.timestamp,
            "size": len(self.content),
            "content_type": self.content_type,
            "labels": self.labels,
            "digest": "sha-256:" + self.digest.hex() if self.listed_digest else None,
            "state": self.state,
        }


class FakeGap:
    """A number no record holds (skipped after a failure): the gap leaf, listed as skipped."""

    state = "skipped"
    timestamp = None

    def __init__(self, number):
        self.number = number

    def leaf(self):
        return ref.gap_leaf(self.number)

    def item(self):
        return {"number": self.number, "state": "skipped"}


#: How the listing shows a record stored before #16 that the backfill has not reached.
_UNNUMBERED = {"number": None, "timestamp": 1_600_000_000_000_000, "size": 3, "content_type": "text/plain",
               "labels": {}, "digest": None, "state": "stored"}


class FakeLogServer:
    def __init__(self, token=None, base="/"):
        self.key = Ed25519PrivateKey.generate()
        self.public = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.token = token
        self.base = base
        self.entries = {}  # (bucket, entry) -> [FakeRecord]
        self.requests = []  # (method, target, headers dict)
        self.cursor_secret = secrets.token_hex(8)
        # tampering knobs
        self.flip_content = set()  # (bucket, entry, number): serve the content with one bit flipped
        self.bad_path = set()  # (bucket, entry, number): corrupt the audit path's first hash
        self.bad_signature = False
        self.no_repr_digest = False
        self.head_size = {}  # (bucket, entry) -> tree size to sign (default: every record)
        self.hide = set()  # (bucket, entry, number): left out of the listing
        self.unreadable = set()  # (bucket, entry, number): content answers 404, the listing says stored
        self.vanish = set()  # (bucket, entry, number): listed as stored in pages, then removed (404, ?number= says removed)
        self.status_for = {}  # substring of the target -> error status to answer
        self.garbage_for = set()  # substrings of targets answered with a body that is not JSON
        self.stall_for = set()  # substrings of targets never answered (until stop)
        self.release = threading.Event()
        self.scheme = "http"
        self._server = None

    # -- data ----------------------------------------------------------------------

    def add(self, bucket, entry, count, start_ts=1_700_000_000_000_000, size=None):
        records = self.entries.setdefault((bucket, entry), [])
        for _ in range(count):
            n = len(records) + 1
            body = (b"record %d of %s " % (n, entry.encode())) * (size or (n % 5 + 1))
            labels = {"n": str(n), "\u00e9t\u00e9": "x"} if n % 2 else {}
            records.append(FakeRecord(n, start_ts + n * 1000, body, "text/plain", labels))
        return records

    def add_gap(self, bucket, entry):
        records = self.entries.setdefault((bucket, entry), [])
        records.append(FakeGap(len(records) + 1))

    def leaves(self, bucket, entry, size=None):
        records = self.numbered(bucket, entry)
        size = len(records) if size is None else size
        return [r.leaf() for r in records[:size]]

    def numbered(self, bucket, entry):
        """The entry's records that have a number (``None`` stands for one stored before #16)."""
        return [r for r in self.entries[(bucket, entry)] if r is not None]

    def head(self, bucket, entry):
        size = self.head_size.get((bucket, entry), len(self.numbered(bucket, entry)))
        head = {
            "bucket": bucket,
            "entry": entry,
            "tree_size": size,
            "root_hash": ref.MTH(self.leaves(bucket, entry, size)).hex(),
            "timestamp": 1_800_000_000_000_000 + size,
            "key_id": hashlib.sha256(self.public).hexdigest(),
        }
        signed = ref.jcs(head)
        if self.bad_signature:
            signed += b" "
        head["signature"] = base64.b64encode(self.key.sign(signed)).decode()
        return head

    # -- the server ------------------------------------------------------------------

    def start(self, tls=None):
        """Serve on 127.0.0.1; ``tls``: ``(cert_path, key_path)`` for HTTPS."""
        fake = self

        class Handler(_Handler):
            server_fake = fake

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            self.scheme = "https"
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()
        return self

    @property
    def url(self):
        host = "localhost" if self.scheme == "https" else "127.0.0.1"
        return f"{self.scheme}://{host}:{self._server.server_address[1]}{self.base}"

    def stop(self):
        self.release.set()
        self._server.shutdown()
        self._server.server_close()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_fake = None

    def log_message(self, *args):
        pass

    def _send(self, status, body=b"", headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        if len(body) > 1 << 20:
            # A large body goes out in slices of itself, never copied whole.
            self.end_headers()
            view = memoryview(body)
            for offset in range(0, len(body), 1 << 16):
                self.wfile.write(view[offset:offset + (1 << 16)])
            return
        # Head and body in one write: two small writes would meet Nagle and a
        # delayed ACK (40 ms a request).
        self._headers_buffer.append(b"\r\n" + body)
        self.flush_headers()

    def _json(self, value, status=200, headers=()):
        self._send(status, json.dumps(value).encode(), [("Content-Type", "application/json")] + list(headers))

    def _error(self, status, detail):
        self._json({"detail": detail}, status, [("x-reduct-error", detail)])

    def do_GET(self):
        fake = self.server_fake
        fake.requests.append(("GET", self.path, dict(self.headers.items())))
        if fake.token and self.headers.get("Authorization") != f"Bearer {fake.token}":
            return self._error(401, "Invalid token")
        if any(part in self.path for part in fake.stall_for):
            fake.release.wait(10)
            self.close_connection = True
            return None
        for part, status in fake.status_for.items():
            if part in self.path:
                return self._error(status, f"Injected {status}")
        if any(part in self.path for part in fake.garbage_for):
            return self._send(200, b"<html>not json</html>", [("Content-Type", "text/html")])
        parts = urlsplit(self.path)
        if not parts.path.startswith(fake.base + "api/v1/"):
            return self._error(404, "Not found")
        path = [unquote(p) for p in parts.path[len(fake.base + "api/v1/"):].split("/")]
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        if path == ["log-key"]:
            return self._json(
                {
                    "algorithm": "ed25519",
                    "public_key": base64.b64encode(fake.public).decode(),
                    "key_id": hashlib.sha256(fake.public).hexdigest(),
                }
            )
        if path[0] == "b" and len(path) == 2:
            names = sorted({e for (b, e) in fake.entries if b == path[1]})
            if not names:
                return self._error(404, f"Bucket '{path[1]}' is not found")
            # Parents of nested entries are listed too, without records (as the daemon does).
            parents = {n.rsplit("/", 1)[0] for n in names if "/" in n} - set(names)
            listed = [{"name": n, "record_count": len(fake.numbered(path[1], n))} for n in names]
            listed += [{"name": n, "record_count": 0} for n in sorted(parents)]
            return self._json({"info": {"name": path[1]}, "entries": listed})
        if len(path) < 3 or (path[1], "/".join(path[2:])) not in fake.entries:
            return self._error(404, "Not found")
        bucket, entry = path[1], "/".join(path[2:])
        if path[0] == "b":
            return self._content(bucket, entry, query)
        if path[0] == "log":
            return self._log(bucket, entry, query)
        if path[0] == "records":
            return self._listing(bucket, entry, query)
        return self._error(404, "Not found")

    def _content(self, bucket, entry, query):
        fake = self.server_fake
        for r in fake.numbered(bucket, entry):
            if str(r.timestamp) == query.get("ts") and r.state == "stored" and (bucket, entry, r.number) not in fake.vanish | fake.unreadable:
                body = r.content
                if (bucket, entry, r.number) in fake.flip_content:
                    body = bytes([body[0] ^ 0x01]) + body[1:]
                headers = [("Content-Type", r.content_type)]
                if not fake.no_repr_digest:
                    headers.append(("repr-digest", "sha-256=:" + base64.b64encode(r.digest).decode() + ":"))
                return self._send(200, body, headers)
        return self._error(404, "No record")

    def _log(self, bucket, entry, query):
        fake = self.server_fake
        head = fake.head(bucket, entry)
        if "proof" in query:
            n, size = int(query["proof"]), int(query["tree_size"])
            if not 1 <= n <= size <= head["tree_size"]:
                return self._error(404, "No such leaf")
            path = ref.PATH(n - 1, fake.leaves(bucket, entry, size))
            if (bucket, entry, n) in fake.bad_path and path:
                path[0] = bytes([path[0][0] ^ 0x80]) + path[0][1:]
            return self._json({"leaf_index": n - 1, "tree_size": size, "audit_path": [h.hex() for h in path]})
        if "first" in query:
            first, second = int(query["first"]), int(query["second"])
            if not 0 < first <= second <= head["tree_size"]:
                return self._error(422, "Bad sizes")
            proof = ref.PROOF(first, fake.leaves(bucket, entry, second))
            return self._json({"first": first, "second": second, "consistency_path": [h.hex() for h in proof]})
        return self._json(head)

    def _listing(self, bucket, entry, query):
        fake = self.server_fake
        if "page" in query:
            return self._error(422, "this fixture only pages by its next links")
        if "number" in query:
            for r in fake.numbered(bucket, entry):
                if str(r.number) == query["number"]:
                    item = r.item()
                    if (bucket, entry, r.number) in fake.vanish:
                        item["state"] = "removed"
                    return self._json(item)
            return self._error(404, "No record with this number")
        start = int(query.get("start", "1"))
        if start > 1 and query.get("k") != fake.cursor_secret:
            return self._error(422, "a cursor not taken from a next link")
        per_page = int(query.get("per_page", "100"))
        items = [
            r.item()
            for r in fake.numbered(bucket, entry)
            if (r.state == "stored" or query.get("include_removed") == "true")
            and (bucket, entry, r.number) not in fake.hide
        ]
        items += [_UNNUMBERED] * (len(fake.entries[(bucket, entry)]) - len(fake.numbered(bucket, entry)))
        total = len(items)
        rest = [i for i in items if i["number"] is None or i["number"] >= start]
        page, more = rest[:per_page], rest[per_page:]
        here = f"http://{self.headers['Host']}{fake.base}api/v1/records/{quote(bucket)}/{quote(entry)}"
        common = f"include_removed={query.get('include_removed', 'false')}&per_page={per_page}"
        links = {"self": here + "?" + common, "first_page": here + "?" + common, "next_page": None, "previous_page": None}
        headers = []
        if more:
            links["next_page"] = f"{here}?{common}&start={more[0]['number']}&k={fake.cursor_secret}"
            headers.append(("Link", f'<{links["next_page"]}>; rel="next"'))
        done = total - len(rest)
        body = {
            "data": page,
            "meta": {"total": total, "per_page": per_page, "current_page": done // per_page + 1,
                     "last_page": max(1, -(-total // per_page))},
            "links": links,
        }
        return self._json(body, headers=headers)
