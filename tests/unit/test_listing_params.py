"""``http/listing_params.py``: the listing's query string (issue #16), every 422."""

from urllib.parse import parse_qs

import pytest

from reduct_twisted.errors import UnprocessableEntity
from reduct_twisted.http.listing_params import parse_listing
from reduct_twisted.storage.listing import Condition, ListingSpec


def parse(query: str) -> ListingSpec:
    args = {k.encode(): [v.encode() for v in vs]
            for k, vs in parse_qs(query, keep_blank_values=True).items()}
    return parse_listing(args)


def refused(query: str) -> str:
    with pytest.raises(UnprocessableEntity) as caught:
        parse(query)
    assert caught.value.status == 422
    return caught.value.message


def test_defaults():
    spec = parse("")
    assert spec == ListingSpec()
    assert (spec.page, spec.per_page, spec.order_by, spec.descending) == (1, 100, "number", False)
    assert spec.include_removed is False and spec.where == () and spec.digest is None


def test_everything_given():
    digest = "ab" * 32
    spec = parse("page=3&per_page=1000&start_ts=5&stop_ts=9&where[cam]=front"
                 "&constraint[cam]=like&where[n]=3&orderBy[timestamp]=desc"
                 f"&include_removed=true&digest=sha-256:{digest.upper()}")
    assert spec.page == 3 and spec.per_page == 1000
    assert (spec.start_ts, spec.stop_ts) == (5, 9)
    assert spec.where == (Condition("cam", "like", "front"), Condition("n", "=", "3"))
    assert (spec.order_by, spec.descending, spec.include_removed) == ("timestamp", True, True)
    assert spec.digest == bytes.fromhex(digest)
    assert parse("page=7&orderBy[number]=asc").page == 7
    assert parse("number=42").number == 42
    assert parse("where[a%20b]=x%26y").where == (Condition("a b", "=", "x&y"),)


@pytest.mark.parametrize("query, text", [
    ("start=abc", "'start' must be an unsigned integer of at least 1"),
    ("start=0", "'start' must be an unsigned integer of at least 1"),
    ("start=-1", "'start' must be an unsigned integer of at least 1"),
    ("page=0", "'page' must be an unsigned integer of at least 1"),
    ("number=0", "'number' must be an unsigned integer of at least 1"),
    ("number=1.5", "'number' must be an unsigned integer of at least 1"),
    ("per_page=1001", "'per_page' must be an unsigned integer between 1 and 1000"),
    ("per_page=0", "'per_page' must be an unsigned integer between 1 and 1000"),
    ("per_page=99999999999999999999999", "'per_page' must be an unsigned integer between 1 and 1000"),
    ("start_ts=x", "'start_ts' must be an unsigned integer"),
    ("stop_ts=18446744073709551616", "'stop_ts' must be an unsigned integer"),
    ("start=1&page=2", "'start' and 'page' exclude each other"),
    ("start=5&orderBy[timestamp]=asc",
     "'start' is a cursor of number order; use 'page' with 'orderBy[timestamp]'"),
    ("include_removed=yes", "'include_removed' must be true or false"),
    ("digest=ab", "'digest' must be sha-256:<64 hexadecimal digits>"),
    ("digest=md5:" + "a" * 32, "'digest' must be sha-256:<64 hexadecimal digits>"),
    ("where[a]=1&constraint[a]=~", "'constraint[a]' must be one of =, !=, <, <=, >, >=, like"),
    ("constraint[a]=>", "'constraint[a]' needs 'where[a]'"),
    ("where[]=1", "'where[]' needs a label name"),
    ("orderBy[size]=asc", "'orderBy[size]': records are ordered by number or timestamp"),
    ("orderBy[number]=up", "'orderBy[number]' must be asc or desc"),
    ("orderBy[number]=asc&orderBy[timestamp]=asc", "'orderBy' takes one field"),
])
def test_bad_parameters_are_422_naming_them(query, text):
    assert refused(query) == text


def test_unknown_parameters_are_ignored():
    assert parse("foo=bar&where=1&orderBy=x") == ListingSpec()
