"""
``reduct-twisted export URL BUCKET DIR`` and ``reduct-twisted import DIR URL
BUCKET``: a bucket to and from the folder format of ``folder.py``, with
labels and content types, over HTTP.

**Streaming.**  A record's content goes between the socket and its file in
64 KiB pieces: reads stream the response body (``http.client``), writes send
the files as an iterable body with its ``Content-Length``; no record is ever
held whole in memory.

**Protocols.**  With a server that has the I/O API (``x-reduct-api`` 1.18
or newer) an entry is exported by one v2 query (``POST /io/:b/q``) read
batch by batch (``GET /io/:b/read``; a batch's records follow each other
in the body, each into its own file), and small records are imported in v2
batches (``POST /io/:b/write``, up to :data:`BATCH_RECORDS` records and
:data:`BATCH_BYTES` bytes each); records larger than :data:`SMALL`, and
everything with an older server, go one by one through the v1 record API
(``GET /b/:b/:e?q=``, ``POST /b/:b/:e?ts=``).  Record headers are parsed and
made with ``reduct_twisted.wire`` (the server's own codec).

**Resuming.**  An export goes on after the last record in each entry's
manifest (records come in timestamp order).  An import asks the server
which timestamps the entry already holds (a v2 ``HEAD`` read: headers only)
and skips those whose size matches; with an older server a record the
server already has answers 409 and is compared by a ``HEAD``.  A timestamp
held with another size is a failure (exit 1), never overwritten.
"""

import hashlib
import os

from reduct_twisted.errors import ReductError
from reduct_twisted.verifier.client import entry_path
from reduct_twisted.wire import v2

from . import folder
from .httpclient import AdminClient, ClientError, raw_headers
from .progress import Progress

CHUNK = 1 << 16
#: Records up to this size are imported in v2 batches (larger ones alone).
SMALL = 1 << 20
BATCH_RECORDS = 80
BATCH_BYTES = 8 << 20
#: Record header bytes per v2 batch at most (a server's RS_IO_BATCH_MAX_METADATA_SIZE is
#: 512 KB by default; an operator may lower it).
BATCH_HEADER_BYTES = 32 << 10
LABEL_PREFIX = "x-reduct-label-"


class TransferError(Exception):
    """The folder or the arguments cannot be used (exit 2)."""


def _api_version(client) -> tuple:
    _, response = client.json("GET", client.target("api/v1/info"))
    text = response.headers.get("x-reduct-api", "")
    try:
        major, minor = (int(x) for x in text.split(".")[:2])
        return major, minor
    except ValueError:
        return (1, 0)


class Transfer:
    def __init__(self, args, stderr, clock=None):
        token = args.token if args.token is not None else os.environ.get("RS_API_TOKEN") or None
        self.client = AdminClient(args.url, token=token, insecure=args.insecure, timeout=args.timeout,
                                  cafile=args.cacert)
        self.bucket = args.bucket
        self.root = args.dir
        extra = {"clock": clock} if clock is not None else {}
        self.progress = Progress(stderr, enabled=not args.quiet, **extra)
        self.failures: list = []
        self.v2 = False

    def fail(self, text: str) -> None:
        self.failures.append(text)
        self.progress.note(f"FAILED {text}")

    def bucket_target(self) -> str:
        return f"api/v1/b/{entry_path(self.bucket)}"

    def record_target(self, entry: str, **query) -> str:
        return self.client.target(f"{self.bucket_target()}/{entry_path(entry)}", query)


# -- export ---------------------------------------------------------------------------


class Export(Transfer):
    def run(self) -> int:
        self.v2 = _api_version(self.client) >= (1, 18)
        info, _ = self.client.json("GET", self.client.target(self.bucket_target()))
        try:
            earlier = folder.read_header(self.root)["bucket"]
        except folder.FolderError:
            earlier = self.bucket  # a new folder (or not an export yet)
        if earlier != self.bucket:
            raise TransferError(f"{self.root} holds an export of bucket {earlier!r}, not {self.bucket!r}")
        folder.write_header(self.root, self.bucket, info.get("settings", {}), self.client.base)
        counts = {e.get("name"): e.get("record_count", 0) for e in info.get("entries", []) if isinstance(e, dict)}
        names = sorted(n for n in counts if isinstance(n, str))
        if self.v2:  # attachment entries (1.19) are not listed: ask for each one a query by name
            names = sorted(names + ["$meta"] + [f"{n}/$meta" for n in names])
        for entry in names:
            manifest = folder.Manifest(folder.entry_dir(self.root, entry))
            try:
                self.progress.start(f"export {self.bucket}/{entry}", counts.get(entry, 0))
                self.progress.advance(records=manifest.count)
                start = None if manifest.last_ts is None else manifest.last_ts + 1
                (self._entry_v2 if self.v2 else self._entry_v1)(entry, manifest, start)
                self.progress.finish(say_empty=entry in counts)
            finally:
                self.progress.close()
                manifest.close()
        return 1 if self.failures else 0

    def _save(self, manifest, ts: int, content_type: str, labels: dict, size: int, chunks) -> None:
        name = f"{ts}{folder.extension(content_type)}"
        path = os.path.join(manifest.directory, name)
        sha, got = hashlib.sha256(), 0
        manifest.open()
        with open(path + folder.PART, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
                sha.update(chunk)
                got += len(chunk)
                self.progress.advance(nbytes=len(chunk))
        if got != size:
            raise ClientError(f"record {ts}: the server sent {got} bytes of {size}")
        os.replace(path + folder.PART, path)
        manifest.add(ts, name, content_type, labels, size, sha.hexdigest())
        self.progress.advance(records=1)

    def _entry_v2(self, entry: str, manifest, start) -> None:
        query = {"query_type": "QUERY", "entries": [entry]}
        if start is not None:
            query["start"] = start
        target = self.client.target(f"api/v1/io/{entry_path(self.bucket)}/q")
        body, _ = self.client.json("POST", target, query)
        read = self.client.target(f"api/v1/io/{entry_path(self.bucket)}/read")
        while True:
            response = self.client.request("GET", read, headers={"x-reduct-query-id": str(body["id"])})
            if response.status == 204:
                self.client.drain(response)
                return
            try:
                batch = v2.parse_request(raw_headers(response))
            except ReductError as exc:
                self.client.close()
                raise ClientError(f"the server sent a batch this client cannot read: {exc}") from None
            for record in batch.records:  # body order: entry index, then timestamp
                self._save(manifest, record.ts, record.content_type, record.labels, record.length,
                           _exactly(response, record.length))
            last = response.headers.get("x-reduct-last") == "true"
            self.client.drain(response)
            if last:
                return

    def _entry_v1(self, entry: str, manifest, start) -> None:
        query = {"start": start} if start is not None else {}
        target = self.client.target(f"{self.bucket_target()}/{entry_path(entry)}/q", query)
        body, _ = self.client.json("GET", target)
        while True:
            response = self.client.request("GET", self.record_target(entry, q=body["id"]))
            if response.status == 204:
                self.client.drain(response)
                return
            headers = response.headers
            labels = {k[len(LABEL_PREFIX):]: v for k, v in response.raw.getheaders()
                      if k.lower().startswith(LABEL_PREFIX)}
            ts, size = int(headers["x-reduct-time"]), int(headers.get("content-length", "0"))
            content_type = headers.get("content-type", "application/octet-stream")
            self._save(manifest, ts, content_type, labels, size, _exactly(response, size))
            last = headers.get("x-reduct-last") in ("1", "true")
            self.client.drain(response)
            if last:
                return


def _exactly(response, size: int):
    """``size`` bytes of the response body, in pieces."""
    while size:
        try:
            chunk = response.raw.read(min(size, CHUNK))
        except OSError as exc:
            raise ClientError(f"reading a body failed: {exc}") from None
        if not chunk:
            raise ClientError("the server closed the body early")
        size -= len(chunk)
        yield chunk


# -- import ---------------------------------------------------------------------------


def _file_chunks(path: str, progress):
    with open(path, "rb") as f:
        while True:
            chunk = f.read(CHUNK)
            if not chunk:
                return
            progress.advance(nbytes=len(chunk))
            yield chunk


def _v2_ok(item: dict) -> bool:
    """Whether the v2 header text can carry the record's content type and labels exactly."""
    ct = item["content_type"]
    if "," in ct or ct != ct.strip() or not ct:
        return False
    for key, value in item["labels"].items():
        if not value or value != value.strip() or '"' in value or key != key.strip() or key.startswith("@"):
            return False
    return item["size"] <= SMALL and _header_size(item) <= BATCH_HEADER_BYTES


def _header_size(item: dict) -> int:
    """A bound on the bytes of the record's v2 header (name, value, separators)."""
    labels = sum(len(k.encode()) + len(v.encode()) + 4 for k, v in item["labels"].items())
    return 48 + len(item["content_type"].encode()) + labels


class Import(Transfer):
    def run(self) -> int:
        header = folder.read_header(self.root)
        self.v2 = _api_version(self.client) >= (1, 18)
        _, response = self.client.json("POST", self.client.target(self.bucket_target()),
                                       header.get("settings") or {}, ok=(409,))
        for entry in folder.entries(self.root):
            directory = folder.entry_dir(self.root, entry)
            have = self._stored(entry) if self.v2 else {}
            count = sum(1 for _ in folder.read_manifest(directory))
            self.progress.start(f"import {self.bucket}/{entry}", count)
            try:
                self._entry(entry, directory, have)
                self.progress.finish()
            finally:
                self.progress.close()
        return 1 if self.failures else 0

    def _stored(self, entry: str) -> dict:
        """``{ts: size}`` of the records the server holds in ``entry`` (v2 HEAD reads: no bodies)."""
        target = self.client.target(f"api/v1/io/{entry_path(self.bucket)}/q")
        body, _ = self.client.json("POST", target, {"query_type": "QUERY", "entries": [entry]})
        read = self.client.target(f"api/v1/io/{entry_path(self.bucket)}/read")
        found = {}
        while True:
            response = self.client.request("HEAD", read, headers={"x-reduct-query-id": str(body["id"])})
            response.raw.read()
            if response.status == 204:
                return found
            for record in v2.parse_request(raw_headers(response)).records:
                found[record.ts] = record.length
            if response.headers.get("x-reduct-last") == "true":
                return found

    def _entry(self, entry: str, directory: str, have: dict) -> None:
        batch: list = []
        body = header = 0
        for item in folder.read_manifest(directory):
            stored = have.get(item["ts"])
            if stored is not None:
                if stored != item["size"]:
                    self.fail(f"{entry} {item['ts']}: the server holds another record ({stored} bytes, "
                              f"the export {item['size']}); left as it is")
                self.progress.advance(records=1)
                continue
            if self.v2 and _v2_ok(item):
                size = _header_size(item)
                if batch and (len(batch) >= BATCH_RECORDS or body + item["size"] > BATCH_BYTES
                              or header + size > BATCH_HEADER_BYTES):
                    self._send_batch(entry, directory, batch)
                    batch = []
                if not batch:
                    body = header = 0
                batch.append(item)
                body, header = body + item["size"], header + size
            else:
                self._send_one(entry, directory, item)
        if batch:
            self._send_batch(entry, directory, batch)

    def _chunks(self, directory: str, items: list):
        for item in items:
            yield from _file_chunks(os.path.join(directory, item["file"]), self.progress)

    def _check_files(self, directory: str, items: list) -> list:
        good = []
        for item in items:
            try:
                size = os.path.getsize(os.path.join(directory, item["file"]))
            except OSError as exc:
                self.fail(f"{directory}/{item['file']}: {exc.strerror or exc}")
                continue
            if size != item["size"]:
                self.fail(f"{directory}/{item['file']}: {size} bytes, the manifest says {item['size']}")
                continue
            good.append(item)
        return good

    def _send_batch(self, entry: str, directory: str, items: list) -> None:
        items = self._check_files(directory, items)
        if not items:
            return
        rows = v2.encode_batch([(entry, i["ts"], i["size"], i["content_type"], i["labels"]) for i in items])
        headers = {name.decode("ascii"): value for name, value in rows}
        length = sum(i["size"] for i in items)
        target = self.client.target(f"api/v1/io/{entry_path(self.bucket)}/write")
        response = self.client.request("POST", target, self._chunks(directory, items), headers, length=length,
                                       retry=False)
        self.client.drain(response)
        start = int(response.headers.get("x-reduct-start-ts", items[0]["ts"]))
        errors = {}
        for name, value in response.headers.items():
            if name.startswith("x-reduct-error-"):
                delta = int(name.rsplit("-", 1)[1])
                errors[start + delta] = value
        for item in items:
            error = errors.get(item["ts"])
            if error is None:
                self.progress.advance(records=1)
            else:
                self._refused(entry, item, error.partition(",")[0], error.partition(",")[2])

    def _send_one(self, entry: str, directory: str, item: dict) -> None:
        if not self._check_files(directory, [item]):
            return
        headers = {"Content-Type": item["content_type"]}
        for key, value in item["labels"].items():
            headers[LABEL_PREFIX + key] = value.encode("utf-8")
        response = self.client.request(
            "POST", self.record_target(entry, ts=item["ts"]),
            _file_chunks(os.path.join(directory, item["file"]), self.progress), headers,
            length=item["size"], ok=(409, 400, 404, 413, 422, 500, 507), retry=False)
        self.client.drain(response)
        if 200 <= response.status < 300:
            self.progress.advance(records=1)
        else:
            self._refused(entry, item, str(response.status), response.headers.get("x-reduct-error", ""))

    def _refused(self, entry: str, item: dict, status: str, message: str) -> None:
        if status == "409":  # already there (an interrupted import): the same record?
            response = self.client.request("HEAD", self.record_target(entry, ts=item["ts"]), ok=(404,))
            self.client.drain(response)
            if response.status == 200 and int(response.headers.get("content-length", -1)) == item["size"]:
                self.progress.advance(records=1)
                return
        self.fail(f"{entry} {item['ts']}: HTTP {status} {message}".rstrip())


# -- the subcommands ------------------------------------------------------------------


def _common(p) -> None:
    p.add_argument("--token", help="API token (default: $RS_API_TOKEN)")
    p.add_argument("--cacert", metavar="FILE", help="trust this CA (PEM) for the server's TLS certificate")
    p.add_argument("--insecure", action="store_true", help="do not verify the server's TLS certificate")
    p.add_argument("--timeout", type=float, default=60.0, metavar="S", help="per-request timeout in seconds (60)")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def add_parsers(subparsers) -> None:
    p = subparsers.add_parser(
        "export", help="copy a bucket's records into a folder",
        description="Copy every entry of BUCKET (records, labels, content types) into DIR (the folder "
        "format of reduct_twisted/admin/folder.py). Run it again to resume: entries go on after the "
        "last record they hold. Exit 0 done, 1 records failed, 2 usage or connection errors.")
    p.add_argument("url", metavar="URL")
    p.add_argument("bucket", metavar="BUCKET")
    p.add_argument("dir", metavar="DIR")
    _common(p)
    p.set_defaults(run=run_export)
    p = subparsers.add_parser(
        "import", help="copy an exported folder into a bucket",
        description="Write the records of an export folder DIR into BUCKET (created with the exported "
        "settings if missing). Run it again to resume: records the bucket already holds are skipped. "
        "Exit 0 done, 1 records failed, 2 usage or connection errors.")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("url", metavar="URL")
    p.add_argument("bucket", metavar="BUCKET")
    _common(p)
    p.set_defaults(run=run_import)


def _run(cls, args, stdout, stderr, clock) -> int:
    job = cls(args, stderr, clock)
    try:
        status = job.run()
    except (folder.FolderError, OSError) as exc:
        raise TransferError(str(exc)) from None
    finally:
        job.progress.close()
        job.client.close()
    verb = "exported" if cls is Export else "imported"
    stdout.write(f"{verb} bucket {args.bucket}: " + (f"{len(job.failures)} record(s) failed\n" if job.failures
                                                      else "all records\n"))
    return status


def run_export(args, stdout, stderr, clock=None) -> int:
    return _run(Export, args, stdout, stderr, clock)


def run_import(args, stdout, stderr, clock=None) -> int:
    return _run(Import, args, stdout, stderr, clock)
