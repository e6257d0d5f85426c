# -*- test-case-name: tests.integration.test_streaming -*-
"""
Routing outside Klein, in one place: what the streaming request asks the
API before a body arrives (:meth:`FastPath.open_body`, from ``gotLength``)
and the hot record routes it calls without Klein
(:meth:`FastPath.direct_handler`): record writes and reads, and batched
writes and reads of both protocols.

Record writes and reads are most of the traffic; resource traversal, a
second werkzeug match and Klein's Deferred plumbing cost about as much as
the work itself (issue #3).  So a plain ``{base}api/v1/b/<bucket>/<entry>``
(the entry possibly a path ``a/b/c``) is recognised by hand here and goes straight to the same handlers Klein
routes to (``routes_records.py``), with the same error mapping; every
other path is matched against the Klein app's own URL map (bound once), and
anything odd goes through Klein.

Permissions are the route table's (``api.py``), never restated here: a
streamed upload's row permission is applied before its body is opened, and
a direct read calls the handler as registered, behind its permission.
"""

from functools import partial
from typing import Optional
from urllib.parse import parse_qs, unquote_to_bytes

from werkzeug.exceptions import HTTPException, MethodNotAllowed

from reduct_twisted.errors import ReductError
from reduct_twisted.http.batch_write import BatchWriteSink
from reduct_twisted.http.io import IoWriteSink, io_write, open_io_write
from reduct_twisted.http.ratelimit import charge_ingress
from reduct_twisted.http.routes_records import (
    open_batch_write,
    open_write,
    write_batch,
    write_record,
)

#: What an entry path may end with to name another route than the record
#: itself (after a ``/``; spec 1.20 §2.2).
ROUTE_SUFFIXES = ("/batch", "/q", "/rename")

#: Endpoints whose body is streamed into a sink opened by ``open_body``.
STREAMING_ENDPOINTS = frozenset({"write_record", "write_record_v0", "write_batch", "io_write"})


def _query_args(query: bytes) -> dict:
    """
    ``parse_qs(query, keep_blank_values=True)``, with a shortcut for the
    usual record write query, a lone ``ts=<digits>``.
    """
    if query[:3] == b"ts=" and query[3:].isdigit():
        return {b"ts": [query[3:]]}
    return parse_qs(query, keep_blank_values=True)


class FastPath:
    """
    The routing done before and beside Klein; mixed into ``ReductAPI``,
    which provides ``base_segments``, ``_record_prefix``, ``_io_prefix``, ``_url_adapter``
    (its Klein app's URL map, bound once), and from its route table
    ``endpoints`` (``{endpoint: handler behind its permission}``),
    ``_write_record_permission`` and ``_read_record`` (the registered
    ``read_record``, behind its permission).
    """

    def open_body(self, request, length: Optional[int]):
        """
        Decide where the body of ``request`` goes, before it arrives.

        :return: a sink for streaming routes; None for routes that take a
            small buffered body.
        :raises ReductError: the request is refused before its body is read.
        """
        channel = request.channel
        raw_path, _, query = channel._path.partition(b"?")
        if channel._command == b"POST":
            names = self._record_names(raw_path)
            if names is not None:
                # The hot path: a plain record write needs no URL map.
                request.route = "write_record"
                request.route_args = {"bucket": names[0], "entry": names[1]}
                self._write_record_permission.check(self, request, names[0])
                charge_ingress(self, request, length)
                return open_write(self, request, length, _query_args(query), *names)
            endpoint, kwargs = self._plain_batch_post(raw_path)
            if endpoint is not None:  # no URL map either
                return self._open_streamed(request, length, query, endpoint, kwargs)
        segments = [unquote_to_bytes(s) for s in raw_path.split(b"/")[1:]]
        base = self.base_segments
        if segments[: len(base)] != base:
            raise ReductError("Not found", 404)
        path_info = "/" + "/".join(s.decode("utf-8", "replace") for s in segments[len(base) :])
        try:
            rule, kwargs = self._url_adapter.match(
                path_info, method=channel._command.decode("ascii", "replace"), return_rule=True
            )
        except MethodNotAllowed:
            return None
        except HTTPException:
            raise ReductError("Not found", 404)
        request.route = rule.endpoint
        if rule.endpoint not in STREAMING_ENDPOINTS:
            return None
        return self._open_streamed(request, length, query, rule.endpoint, kwargs)

    def _open_streamed(self, request, length, query: bytes, endpoint: str, kwargs: dict):
        """The sink of a streaming ``endpoint``'s body, behind its permission."""
        request.route = endpoint
        permission = self.endpoints[endpoint].permission
        permission.check(self, request, kwargs[permission.bucket])
        charge_ingress(self, request, length)
        if endpoint == "write_batch":
            sink = open_batch_write(self, request, length, **kwargs)
        elif endpoint == "io_write":
            sink = open_io_write(self, request, length, **kwargs)
        else:
            args = parse_qs(query, keep_blank_values=True)
            sink = open_write(self, request, length, args, **kwargs)
        request.route_args = kwargs
        return sink

    def _plain_batch_post(self, raw_path: bytes) -> tuple:
        """
        ``(endpoint, kwargs)`` of a plain batched write (``write_batch`` or
        ``io_write``: see :meth:`_batch_names`, :meth:`_io_bucket`), else
        ``(None, None)`` (the URL map decides).
        """
        names = self._batch_names(raw_path)
        if names is not None:
            return "write_batch", {"bucket": names[0], "entry": names[1]}
        bucket = self._io_bucket(raw_path, b"write")
        if bucket is not None:
            return "io_write", {"bucket": bucket}
        return None, None

    def _batch_names(self, raw_path: bytes):
        """
        ``(bucket, entry)`` of a plain ``{base}api/v1/b/<bucket>/<entry
        path>/batch``, else None.
        """
        if not raw_path.endswith(b"/batch"):
            return None
        return self._record_names(raw_path[:-6])

    def _io_bucket(self, raw_path: bytes, action: bytes):
        """The bucket of a plain ``{base}api/v1/io/<bucket>/<action>``, else None."""
        segments = raw_path.split(b"/")
        prefix = self._io_prefix
        if len(segments) != len(prefix) + 2 or segments[-1] != action or segments[:-2] != prefix:
            return None
        try:
            bucket = unquote_to_bytes(segments[-2]).decode("utf-8")
        except UnicodeDecodeError:
            return None
        return bucket if bucket and "/" not in bucket else None

    def _record_names(self, raw_path: bytes):
        """
        ``(bucket, entry)`` if ``raw_path`` is plainly
        ``{base}api/v1/b/<bucket>/<entry path>`` and names the
        single-record route (no ``/batch``, ``/q`` or ``/rename`` suffix
        after a ``/``, spec 1.20 §2.2), else None (Klein decides).
        """
        segments = raw_path.split(b"/")
        prefix = self._record_prefix
        count = len(prefix)
        if len(segments) < count + 2 or segments[:count] != prefix:
            return None
        try:
            bucket = unquote_to_bytes(segments[count]).decode("utf-8")
            if len(segments) == count + 2:
                entry = unquote_to_bytes(segments[-1]).decode("utf-8")
            else:
                entry = unquote_to_bytes(b"/".join(segments[count + 1 :])).decode("utf-8")
        except UnicodeDecodeError:
            return None
        if not bucket or not entry or "/" in bucket:
            return None
        if "/" in entry and entry.endswith(ROUTE_SUFFIXES):
            return None
        return bucket, entry

    def encoded_slash_ok(self, raw_path: bytes) -> bool:
        """
        Whether every encoded slash (``%2F``) of ``raw_path`` is in the
        entry path of ``{base}[api/v1/]b/<bucket>/<entry path>``, where it
        is a separator like ``/`` (spec 1.20 §2.2).  Anywhere else it would
        make the router address something else than the client named.
        """
        segments = raw_path.split(b"/")
        base = [b""] + self.base_segments
        if segments[: len(base)] != base:
            return False
        rest = segments[len(base) :]
        if rest[:2] == [b"api", b"v1"]:
            rest = rest[2:]
        return len(rest) >= 3 and rest[0] == b"b" and b"%2f" not in rest[1].lower()

    def direct_handler(self, request):
        """
        The handler for a request on the hot record routes (record writes
        and reads, batched writes and reads of both protocols), to be called
        without Klein's per-request machinery, or None to go through Klein.
        """
        method = request.method
        if method == b"POST":
            if request.sink is None or request.route_args is None:
                return None
            if isinstance(request.sink, IoWriteSink):
                return partial(io_write, self, request, **request.route_args)
            if isinstance(request.sink, BatchWriteSink):
                return partial(write_batch, self, request, **request.route_args)
            return partial(write_record, self, request, **request.route_args)
        if method != b"GET" and method != b"HEAD":
            return None
        path = request.path
        names = self._record_names(path)
        if names is not None:
            request.route = "read_record"
            return partial(self._read_record, self, request, *names)
        return self._batch_read_handler(request, path)

    def _batch_read_handler(self, request, raw_path: bytes):
        """
        The handler of a batched read (v1 ``{base}api/v1/b/<bucket>/<entry
        path>/batch``, or the I/O API's ``{base}api/v1/io/<bucket>/read``),
        as registered (behind its permission), or None (Klein decides).
        """
        names = self._batch_names(raw_path)
        if names is not None:
            request.route = "read_batch"
            return partial(self.endpoints["read_batch"], self, request, *names)
        bucket = self._io_bucket(raw_path, b"read")
        if bucket is None:
            return None
        request.route = "io_read"
        return partial(self.endpoints["io_read"], self, request, bucket)
