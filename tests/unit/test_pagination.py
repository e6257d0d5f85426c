"""``http/pagination.py``: the links of a listing page (issue #16)."""

from urllib.parse import parse_qs, urlsplit

from twisted.internet.address import IPv4Address, IPv6Address

from reduct_twisted.http.listing_params import parse_listing
from reduct_twisted.http.pagination import link_header, links, listing_url, request_base
from reduct_twisted.storage.listing import Condition, ListingSpec

BASE = "http://db.example:8383/reduct/"


class _Request:
    def __init__(self, host=None, secure=False, address=IPv4Address("TCP", "10.0.0.5", 8383)):
        self._host, self._secure, self._address = host, secure, address

    def isSecure(self):
        return self._secure

    def getHeader(self, name):
        assert name == b"host"
        return self._host

    def getHost(self):
        return self._address


def test_request_base_from_host_scheme_and_base_path():
    assert request_base(_Request(b"db.example:8383"), "/reduct/") == BASE
    assert request_base(_Request(b"db.example", secure=True), "/") == "https://db.example/"
    # no Host, or a Host that would make another URL: the listening address
    assert request_base(_Request(None), "/") == "http://10.0.0.5:8383/"
    assert request_base(_Request(b"evil.example/x?"), "/") == "http://10.0.0.5:8383/"
    six = _Request(None, address=IPv6Address("TCP", "::1", 9000))
    assert request_base(six, "/") == "http://[::1]:9000/"


def test_urls_escape_every_segment_and_parameter():
    url = listing_url(BASE, "cams", "a b/c%d", [("where[cam]", "front/door&x"), ("start", "5")])
    split = urlsplit(url)
    assert split.path == "/reduct/api/v1/records/cams/a%20b/c%25d"
    assert parse_qs(split.query) == {"where[cam]": ["front/door&x"], "start": ["5"]}
    assert listing_url(BASE, "b", "e", []) == BASE + "api/v1/records/b/e"


def args(url: str) -> dict:
    return {k.encode(): [v.encode() for v in vs] for k, vs in parse_qs(urlsplit(url).query).items()}


def test_links_carry_every_narrowing_parameter_and_parse_back_to_the_same_spec():
    spec = ListingSpec(start=101, per_page=50, start_ts=1, stop_ts=9,
                       where=(Condition("cam", "like", "f%"), Condition("n", "=", "3")),
                       order_by="number", descending=True, include_removed=True,
                       digest=bytes(range(32)))
    found = links(BASE, "b", "e", spec, next_start=151, previous_start=51, cursor=True)
    assert parse_listing(args(found["self"])) == spec
    assert parse_listing(args(found["next_page"])).start == 151
    assert parse_listing(args(found["previous_page"])).start == 51
    first = parse_listing(args(found["first_page"]))
    assert first.start is None and first.page == 1 and first.per_page == 50
    assert link_header(found) == (
        f'<{found["next_page"]}>; rel="next", <{found["previous_page"]}>; rel="previous"'
    ).encode()


def test_cursor_ends_have_no_link():
    found = links(BASE, "b", "e", ListingSpec(start=1), cursor=True)
    assert found["next_page"] is None and found["previous_page"] is None
    assert link_header(found) is None
    assert "per_page" not in found["self"]  # defaults are left out


def test_page_links():
    spec = ListingSpec(page=2, per_page=10)
    found = links(BASE, "b", "e", spec, last_page=3, cursor=False)
    assert parse_listing(args(found["next_page"])).page == 3
    assert parse_listing(args(found["previous_page"])).page == 1
    last = links(BASE, "b", "e", ListingSpec(page=3), last_page=3, cursor=False)
    assert last["next_page"] is None
    beyond = links(BASE, "b", "e", ListingSpec(page=9), last_page=3, cursor=False)
    assert parse_listing(args(beyond["previous_page"])).page == 3
    assert link_header(beyond) == f'<{beyond["previous_page"]}>; rel="previous"'.encode()
