"""
The framework's ceiling: a minimal in-memory twisted.web server speaking the
single-record subset of the ReductStore API that the benchmark uses.

    python mock_server.py PORT        (binds 127.0.0.1 only)

- ``POST /api/v1/b/<bucket>/<entry>?ts=<us>`` stores the body with its
  content type and ``x-reduct-label-*`` headers (409 if the timestamp is
  taken);
- ``GET  /api/v1/b/<bucket>/<entry>?ts=<us>`` answers it with
  ``x-reduct-time``, the content type and the labels, as the daemon does.

Nothing else: no buckets, no access log, no disk (the body is collected in
memory instead of twisted.web's temp file for bodies over 100 kB), raw
``Resource`` with ``parsePOSTFormSubmission=False``.  Records are kept in
insertion order and the oldest dropped once they hold more than
``MAX_BYTES``, so a long run does not fill the RAM.  What the daemon spends
per request beyond this server is its own work.
"""

import io
import sys

from twisted.internet import reactor
from twisted.web import resource, server

MAX_BYTES = 1 << 30
LABEL = b"x-reduct-label-"
records = {}  # (path, ts) -> (content type, [(label header, value)], body)
held = [0]


class Request(server.Request):
    def gotLength(self, length):
        self.content = io.BytesIO()


class Records(resource.Resource):
    isLeaf = True

    def render(self, request):
        ts = request.args.get(b"ts", [None])[0]
        if ts is None:
            request.setResponseCode(422)
            return b""
        key = (request.path, ts)
        if request.method == b"POST":
            if key in records:
                request.setResponseCode(409)
                return b""
            labels = [(k, v[0]) for k, v in request.requestHeaders.getAllRawHeaders()
                      if k.lower().startswith(LABEL)]
            body = request.content.getvalue()
            records[key] = (request.getHeader(b"content-type"), labels, body)
            held[0] += len(body)
            while held[0] > MAX_BYTES:
                held[0] -= len(records.pop(next(iter(records)))[2])
            return b""
        if request.method == b"GET":
            found = records.get(key)
            if found is None:
                request.setResponseCode(404)
                return b""
            content_type, labels, body = found
            request.setHeader(b"x-reduct-time", ts)
            request.setHeader(b"content-type", content_type or b"application/octet-stream")
            for name, value in labels:
                request.setHeader(name, value)
            return body
        request.setResponseCode(405)
        return b""


class QuietSite(server.Site):
    def log(self, request):
        pass


def main() -> None:
    site = QuietSite(Records(), parsePOSTFormSubmission=False)
    site.requestFactory = Request
    site.displayTracebacks = False
    reactor.listenTCP(int(sys.argv[1]), site, interface="127.0.0.1")
    reactor.run()


if __name__ == "__main__":
    main()
