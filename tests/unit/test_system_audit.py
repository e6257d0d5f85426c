"""
``http/audit.py``: which finished requests reach the audit stream and with
what (spec 1.20 §8.3), on hand-made requests; ``ReductSite.log`` calls it
for every finished request (tests/integration/test_system.py).
"""

from twisted.internet.address import IPv4Address
from twisted.web.http_headers import Headers

from reduct_twisted.http.audit import audit_request


class _Request:
    def __init__(self, code=200, path=b"/api/v1/b/x", token="t", error=None, peer="10.1.2.3",
                 started=100.0, headers=None):
        self.code = code
        self.path = path
        self.method = b"PUT"
        if token is not None:
            self.reduct_token_name = token
        if started is not None:
            self.reduct_started = started
        self.responseHeaders = Headers()
        if error is not None:
            self.responseHeaders.setRawHeaders(b"x-reduct-error", [error])
        self._peer = peer
        self.requestHeaders = Headers()
        for name, value in (headers or {}).items():
            self.requestHeaders.setRawHeaders(name, [value])

    def getClientAddress(self):
        return IPv4Address("TCP", self._peer, 1234)


class _Events:
    def __init__(self):
        self.calls = []

    def record_call(self, *args):
        self.calls.append(args)


def audited(request, now=100.25):
    events = _Events()
    audit_request(events, request, now)
    return events.calls


def test_identified_token_recorded_with_every_field():
    assert audited(_Request(code=404, error=b"Bucket 'x' is not found")) == [
        ("t", b"PUT", b"/api/v1/b/x", 404, b"Bucket 'x' is not found", "10.1.2.3", 100.0, 0.25),
    ]


def test_unauthorized_recorded_without_a_token():
    [call] = audited(_Request(code=401, token=None, error=b"Invalid token"))
    assert call[0] == "unauthorized" and call[3:5] == (401, b"Invalid token")


def test_unidentified_caller_not_recorded():
    assert audited(_Request(code=404, token=None)) == []


def test_alive_and_ready_never_recorded():
    assert audited(_Request(path=b"/api/v1/alive")) == []
    assert audited(_Request(path=b"/ready", code=401, token=None)) == []
    assert len(audited(_Request(path=b"/api/v1/alive-ish"))) == 1


def test_client_ip_behind_a_trusted_proxy():
    request = _Request(peer="127.0.0.1", headers={b"x-forwarded-for": b"203.0.113.10"})
    [call] = audited(request)
    assert call[5] == "203.0.113.10"


def test_request_without_start_counts_zero_seconds():
    [call] = audited(_Request(started=None), now=7.0)
    assert call[6:] == (7.0, 0.0)


def test_bytes_decoded_when_the_aggregate_is_written():
    from reduct_twisted.system.aggregate import AuditAggregates

    agg = AuditAggregates()
    agg.add("t", b"GET", b"/api/v1/b/\xc3\xa9", 404, b"No such thing", None, 1.0, 0.5)
    [(_, _, _, message, payload)] = agg.due(100.0)
    assert message == "No such thing"
    assert (payload["method"], payload["path"]) == ("GET", "/api/v1/b/\u00e9")


def test_peer_asked_once_per_connection():
    """The TCP peer is kept on the channel: the next request of the connection does not ask again."""
    from reduct_twisted.http.clientip import client_ip

    class _Channel:
        pass

    channel = _Channel()
    first, second = _Request(peer="10.9.8.7"), _Request(peer="10.0.0.99")
    first.channel = second.channel = channel
    assert client_ip(first) == "10.9.8.7"
    assert client_ip(second) == "10.9.8.7"  # the connection's peer, not asked again
