"""
Fixed-window rate limits (``http/ratelimit.py``, spec 1.20 §5.10) on a
``task.Clock``: counting, the 429 text, windows, scopes, pruning.
"""

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.web.test.requesthelper import DummyRequest

from reduct_twisted.config import Config
from reduct_twisted.config_limits import RateLimit
from reduct_twisted.errors import ReductError
from reduct_twisted.http.ratelimit import RateLimits, Window, charge_egress, human_size


@pytest.mark.parametrize("amount, text", [
    (0, "0 B"), (999, "999 B"), (1000, "1.0 KB"), (1536, "1.5 KB"),
    (10_000_000, "10.0 MB"), (10_005_949, "10.0 MB"), (2_000_000_000, "2.0 GB"),
    (1 << 40, "1.1 TB"),
])
def test_human_size_is_upstreams(amount, text):
    assert human_size(amount) == text


def test_api_window_counts_and_refuses_with_the_exact_text():
    window = Window("api requests", RateLimit(2, 60), in_bytes=False)
    assert window.consume("client 10.0.0.1", 1, 1000.0) is None
    assert window.consume("client 10.0.0.1", 1, 1010.5) is None
    err = window.consume("client 10.0.0.1", 1, 1020.9)
    assert err.status == 429
    assert err.message == ("rate limit for api requests (client 10.0.0.1) exceeded: "
                           "used=3 limit=2 retry_after=40s")
    # Refused units are not counted; another client has its own window.
    assert window.counters["client 10.0.0.1"] == [1000, 2]
    assert window.consume("client 10.0.0.2", 2, 1021) is None
    # The window ends 60 s after its first unit.
    assert window.consume("client 10.0.0.1", 1, 1059.9) is not None
    assert window.consume("client 10.0.0.1", 2, 1060) is None


def test_byte_window_text_has_human_sizes():
    window = Window("ingress bytes", RateLimit(10_000_000, 3600), in_bytes=True)
    assert window.consume("global", 6_000_000, 0) is None
    err = window.consume("global", 4_005_949, 3562)
    assert err.message == (
        "rate limit for ingress bytes (global) exceeded: used=10.0 MB (10005949) "
        "limit=10.0 MB (10000000) retry_after=38s")


def test_retry_after_is_at_least_one_second():
    window = Window("egress bytes", RateLimit(1, 1), in_bytes=True)
    assert window.consume("global", 1, 5.2) is None
    assert window.consume("global", 1, 5.9).message.endswith("retry_after=1s")


def test_a_request_bigger_than_the_limit_is_refused_in_a_fresh_window():
    window = Window("ingress bytes", RateLimit(100, 10), in_bytes=True)
    err = window.consume("global", 101, 0)
    assert "used=101 B (101) limit=100 B (100) retry_after=10s" in err.message
    assert window.consume("global", 100, 0) is None


def test_windows_that_are_over_are_pruned():
    window = Window("api requests", RateLimit(5, 10), in_bytes=False)
    for n in range(100):
        window.consume(f"client 10.0.0.{n}", 1, 0)
    assert len(window.counters) == 100
    window.consume("client 192.0.2.1", 1, 10)
    assert list(window.counters) == ["client 192.0.2.1"]


def test_no_limits_configured_is_none():
    assert RateLimits.from_config(Config(), Clock()) is None
    limits = RateLimits.from_config(Config(rate_limit_egress=RateLimit(5, 60)), Clock())
    assert limits.api is None and limits.ingress is None and limits.egress.amount == 5


class _Api:
    def __init__(self, limits):
        self.rate_limits = limits


def _request(peer="203.0.113.7", headers=None):
    request = DummyRequest([b""])
    request.client = IPv4Address("TCP", peer, 40000)
    for name, value in (headers or {}).items():
        request.requestHeaders.setRawHeaders(name, [value])
    return request


def test_scope_is_the_resolved_client_address():
    clock = Clock()
    limits = RateLimits(RateLimit(1, 60), None, None, clock)
    assert limits.request(_request()) is None
    err = limits.request(_request())
    assert "(client 203.0.113.7)" in err.message
    # Behind a trusted proxy the forwarded client counts, not the proxy.
    assert limits.request(_request("127.0.0.1", {b"x-forwarded-for": b"198.51.100.1"})) is None
    err = limits.request(_request("127.0.0.1", {b"x-forwarded-for": b"198.51.100.1"}))
    assert "(client 198.51.100.1)" in err.message


def test_scope_global_without_an_address():
    limits = RateLimits(RateLimit(0, 60), None, None, Clock())
    request = _request()
    request.client = None
    assert "(global)" in limits.request(request).message


def test_charge_egress_raises_and_counts_nothing_when_refused():
    clock = Clock()
    api = _Api(RateLimits(None, None, RateLimit(1000, 60), clock))
    charge_egress(api, _request(), 600)
    with pytest.raises(ReductError) as e:
        charge_egress(api, _request(), 600)
    assert e.value.status == 429
    assert "used=1.2 KB (1200) limit=1.0 KB (1000) retry_after=60s" in e.value.message
    charge_egress(api, _request(), 400)
    clock.advance(60)
    charge_egress(api, _request(), 1000)
    charge_egress(_Api(None), _request(), 1 << 40)  # no limits: a no-op
