"""
The batch protocol v2 (spec 1.20 §1.2): name encoding, request parsing
with its exact 422 texts and check order, and the response encoder, read
back by the request parser (round trips, property-tested).
"""

import pytest
from hypothesis import given, settings, strategies as st

from reduct_twisted.errors import UnprocessableEntity
from reduct_twisted.wire import U64_MAX
from reduct_twisted.wire.v2 import (
    BatchEncoder,
    decode_name,
    encode_batch,
    encode_name,
    error_name,
    parse_label_delta,
    parse_request,
)


def raw(headers: dict):
    """``getAllRawHeaders()`` of a request with these headers (names as given)."""
    return [(k.encode("latin-1"), [v.encode("utf-8") if isinstance(v, str) else v])
            for k, v in headers.items()]


def parse(headers: dict, **kwargs):
    return parse_request(raw(headers), **kwargs)


def refused(headers: dict, **kwargs) -> str:
    with pytest.raises(UnprocessableEntity) as info:
        parse(headers, **kwargs)
    return info.value.message


# -- names ----------------------------------------------------------------------------


@pytest.mark.parametrize("name, encoded", [
    ("a/b", "a%2Fb"),
    ("x/y/$meta", "x%2Fy%2F$meta"),
    ("cam 2", "cam%202"),
    ("plain-name_1", "plain-name_1"),
    ("é", "%C3%A9"),
    ("a,b", "a%2Cb"),
    ("", ""),
])
def test_encode_name(name, encoded):
    assert encode_name(name) == encoded
    assert decode_name(encoded) == name


def test_percent_is_encoded_so_that_names_round_trip():
    """
    Upstream keeps ``%`` (a tchar) as it is, so a name holding one cannot
    come back; we send ``%25``, which every decoder reads as ``%`` (and
    which is what Python's ``quote(name, safe="$")`` gives, as upstream's
    tests encode names).
    """
    assert encode_name("100%") == "100%25"
    assert decode_name("100%25") == "100%"
    assert decode_name("a%41") == "aA"


def test_decode_accepts_lowercase_hex_and_plain_percent_free_names():
    assert decode_name("a%2fb") == "a/b"
    assert decode_name("%24meta") == "$meta"


@pytest.mark.parametrize("raw_name", ["a%", "a%2", "a%zz", "%G0", "ab%2"])
def test_decode_bad_percent(raw_name):
    with pytest.raises(UnprocessableEntity) as info:
        decode_name(raw_name)
    assert info.value.message == f"Invalid entry encoding in header name: '{raw_name}'"
    with pytest.raises(UnprocessableEntity) as info:
        decode_name(raw_name, label=True)
    assert info.value.message == f"Invalid label encoding in header value: '{raw_name}'"


def test_decode_not_utf8():
    with pytest.raises(UnprocessableEntity) as info:
        decode_name("a%FF")
    assert info.value.message == "Entry name is not valid UTF-8 in header 'a%FF'"
    with pytest.raises(UnprocessableEntity) as info:
        decode_name("a%FF", label=True)
    assert info.value.message == "Invalid label encoding in header value: 'a%FF'"


@given(st.text())
def test_names_round_trip(name):
    encoded = encode_name(name)
    assert all(0x21 <= ord(c) < 0x7F and c != "," for c in encoded)
    assert decode_name(encoded) == name


# -- requests: the upstream examples ---------------------------------------------------


def test_body_order_is_entry_then_time():
    """Upstream test_write_batched_orders_by_entry_then_time."""
    req = parse({"x-reduct-entries": "e0,e1", "x-reduct-start-ts": "1000",
                 "x-reduct-0-10": "2,text/plain", "x-reduct-1-0": "3,text/plain"})
    assert [(r.entry, r.ts, r.length, r.content_type) for r in req.records] == [
        ("e0", 1010, 2, "text/plain"), ("e1", 1000, 3, "text/plain")]
    assert req.total_length == 5
    assert req.echo_headers() == [(b"x-reduct-entries", b"e0,e1"),
                                  (b"x-reduct-start-ts", b"1000")]


def test_records_of_an_entry_sorted_by_delta_whatever_the_header_order():
    req = parse({"X-Reduct-Entries": "b,a", "X-Reduct-Start-Ts": "5",
                 "X-Reduct-1-9": "1", "x-reduct-0-3": "1,t", "x-reduct-1-2": "2,u,k=v",
                 "x-reduct-0-1": "4,s"})
    assert [(r.index, r.delta, r.ts, r.entry) for r in req.records] == [
        (0, 1, 6, "b"), (0, 3, 8, "b"), (1, 2, 7, "a"), (1, 9, 14, "a")]
    # the bare "1" of a/9 inherits a/2's type and labels
    assert (req.records[3].content_type, req.records[3].labels) == ("u", {"k": "v"})


def test_value_forms_and_previous_record_state():
    req = parse({
        "x-reduct-entries": "e", "x-reduct-start-ts": "0", "x-reduct-labels": "a,b",
        "x-reduct-0-0": "1,text/plain,0=one,1=two,c=3",
        "x-reduct-0-1": "2",                       # everything inherited
        "x-reduct-0-2": "3,image/png",             # type changes, labels kept
        "x-reduct-0-3": "4,,1=,c=\"x,y\"",         # type kept, b removed, c changed
        "x-reduct-0-4": "5, ,0=uno",               # blank type = previous
    })
    got = [(r.length, r.content_type, r.labels) for r in req.records]
    assert got == [
        (1, "text/plain", {"a": "one", "b": "two", "c": "3"}),
        (2, "text/plain", {"a": "one", "b": "two", "c": "3"}),
        (3, "image/png", {"a": "one", "b": "two", "c": "3"}),
        (4, "image/png", {"a": "one", "c": "x,y"}),
        (5, "image/png", {"a": "uno", "c": "x,y"}),
    ]


def test_bare_lengths_parsed_once_each_stay_exact():
    """Bare ``<len>`` values are parsed once per request and text ("7" and
    "007" alike); one past U64_MAX is refused even after valid ones."""
    req = parse({"x-reduct-entries": "e,f", "x-reduct-start-ts": "0",
                 "x-reduct-0-0": "1,t", "x-reduct-0-1": "7", "x-reduct-0-2": "007",
                 "x-reduct-1-0": "2,u", "x-reduct-1-1": "7", "x-reduct-1-2": "8",
                 "x-reduct-0-3": str(U64_MAX)})
    assert [(r.entry, r.length, r.content_type) for r in req.records] == [
        ("e", 1, "t"), ("e", 7, "t"), ("e", 7, "t"), ("e", U64_MAX, "t"),
        ("f", 2, "u"), ("f", 7, "u"), ("f", 8, "u")]
    with pytest.raises(UnprocessableEntity) as info:
        parse({"x-reduct-entries": "e", "x-reduct-start-ts": "0", "x-reduct-0-0": "1,t",
               "x-reduct-0-1": "7", "x-reduct-0-2": str(U64_MAX + 1)})
    assert info.value.message == "Invalid batched header"


def test_first_record_defaults():
    req = parse({"x-reduct-entries": "e,f", "x-reduct-start-ts": "0",
                 "x-reduct-0-0": "1,", "x-reduct-1-0": "1,,k=v"})
    assert [(r.content_type, r.labels) for r in req.records] == [
        ("application/octet-stream", {}), ("application/octet-stream", {"k": "v"})]


def test_numeric_label_key_without_label_table_is_a_name():
    req = parse({"x-reduct-entries": "e", "x-reduct-start-ts": "0", "x-reduct-0-0": "0,t,0=x"})
    assert req.records[0].labels == {"0": "x"}


def test_update_label_operations_accumulate_per_entry():
    """Upstream io/update_test: label indexes, removal, per-entry state [1.18.5]."""
    req = parse({"x-reduct-entries": "e0,e1", "x-reduct-start-ts": "1000",
                 "x-reduct-labels": "a,b", "x-reduct-0-0": "0,,0=one,1=,c=3",
                 "x-reduct-1-10": "0,,a=two"})
    assert [(r.entry, r.ts, r.changes) for r in req.records] == [
        ("e0", 1000, {"a": "one", "b": "", "c": "3"}), ("e1", 1010, {"a": "two"})]
    req = parse({"x-reduct-entries": "e", "x-reduct-start-ts": "0",
                 "x-reduct-0-0": "0,,a=1,b=2", "x-reduct-0-1": "0,,a=", "x-reduct-0-2": "0"})
    assert [r.changes for r in req.records] == [
        {"a": "1", "b": "2"}, {"a": "", "b": "2"}, {"a": "", "b": "2"}]


def test_non_record_headers_are_ignored():
    req = parse({"x-reduct-entries": "e", "x-reduct-start-ts": "0", "x-reduct-query-id": "1",
                 "x-reduct-content-length": "1", "x-reduct-0-0": "1,t",
                 "content-length": "1", "x-reduct-api": "1.20"})
    assert len(req.records) == 1


def test_empty_batch():
    """§10.4 e: a blank entry list without record headers is an empty batch."""
    req = parse({"x-reduct-entries": "", "x-reduct-start-ts": "0"})
    assert req.records == () and req.entries == ()
    assert req.echo_headers() == [(b"x-reduct-entries", b""), (b"x-reduct-start-ts", b"0")]


def test_decoded_entry_names():
    req = parse({"x-reduct-entries": " a%2Fb , x%2Fy%2F$meta", "x-reduct-start-ts": "0",
                 "x-reduct-labels": "k%20x", "x-reduct-1-0": "1,t,0=v"})
    assert req.entries == ("a/b", "x/y/$meta")
    assert req.records[0].labels == {"k x": "v"}
    assert req.entries_header == b"a%2Fb,x%2Fy%2F$meta"


def test_removal_values_ignored_and_start_checked_first():
    req = parse({"x-reduct-entries": "e", "x-reduct-start-ts": "7", "x-reduct-0-1": "",
                 "x-reduct-0-2": "0,"}, start_first=True, values=False)
    assert [(r.entry, r.ts) for r in req.records] == [("e", 8), ("e", 9)]
    assert refused({"x-reduct-entries": ""}, start_first=True) == (
        "x-reduct-start-ts header is required")


def test_check_entries_runs_before_record_headers():
    seen = []

    def check(entries):
        seen.append(list(entries))
        raise UnprocessableEntity("no")

    assert refused({"x-reduct-entries": "a,b", "x-reduct-start-ts": "0",
                    "x-reduct-9-0": ""}, check_entries=check) == "no"
    assert seen == [["a", "b"]]


# -- requests: every 422 of §1.2 -----------------------------------------------------------

BASE = {"x-reduct-entries": "e", "x-reduct-start-ts": "1000"}


@pytest.mark.parametrize("extra, message", [
    ({"x-reduct-time-1000": "1,t"}, "Invalid header 'x-reduct-time-1000': entry index must be a number"),
    ({"x-reduct-error-0-5": "1,t"}, "Invalid header 'x-reduct-error-0-5': entry index must be a number"),
    ({"x-reduct--5": "1,t"}, "Invalid header 'x-reduct--5': entry index must be a number"),
    ({"x-reduct-5": "1,t"}, "Invalid header 'x-reduct-5': entry index must be a number"),
    ({"x-reduct-0-": "1,t"}, "Invalid header 'x-reduct-0-': must be an unix timestamp in microseconds"),
    ({"x-reduct-0-18446744073709551616": "1,t"},
     "Invalid header 'x-reduct-0-18446744073709551616': must be an unix timestamp in microseconds"),
    ({"x-reduct-0-18446744073709551000": "1,t"},
     "Invalid header 'x-reduct-0-18446744073709551000': must be an unix timestamp in microseconds"),
    ({"x-reduct-1-0": "1,t"}, "Invalid header 'x-reduct-1-0': entry index out of range"),
    ({"x-reduct-99999999999999999999999-0": "1,t"},
     "Invalid header 'x-reduct-99999999999999999999999-0': entry index out of range"),
    ({"x-reduct-0-0": "x,t"}, "Invalid batched header"),
    ({"x-reduct-0-0": "-1,t"}, "Invalid batched header"),
    ({"x-reduct-0-0": "18446744073709551616,t"}, "Invalid batched header"),
    ({"x-reduct-0-0": ""}, "Invalid batched header"),
    ({"x-reduct-0-0": "1"}, "Content-type and labels must be provided for the first record of an entry"),
    ({"x-reduct-0-0": "1,t,novalue"}, "Invalid batched header"),
    ({"x-reduct-0-0": '1,t,a="open'}, "Invalid batched header"),
    ({"x-reduct-0-0": '1,t,a="x"y'}, "Invalid batched header"),
    ({"x-reduct-0-0": b"1,t,a=\xff"}, "Invalid batched header"),
    ({"x-reduct-0-0": "1,t,@a=1"}, "Label names must not start with '@': reserved for computed labels"),
    ({"x-reduct-0-0": "1,t,5=1", "x-reduct-labels": "a"}, "Label index '5' is out of range"),
    ({"x-reduct-0-0": "1,t,0=1", "x-reduct-labels": " "}, "x-reduct-labels header is empty"),
    ({"x-reduct-0-0": "1,t,0=1", "x-reduct-labels": "a%"},
     "Invalid label encoding in header value: 'a%'"),
    ({"x-reduct-0-0": "1,t,0=1", "x-reduct-labels": b"\xc3\xa9"}, "Invalid labels header"),
])
def test_bad_record_headers(extra, message):
    assert refused({**BASE, **extra}) == message


@pytest.mark.parametrize("headers, message", [
    ({"x-reduct-start-ts": "0", "x-reduct-entries": " ", "x-reduct-0-0": "1,t"},
     "x-reduct-entries header is required"),
    ({"x-reduct-start-ts": "0", "x-reduct-entries": "a,,b"},
     "x-reduct-entries header must not contain empty entry names"),
    ({"x-reduct-start-ts": "0", "x-reduct-entries": "a, "},
     "x-reduct-entries header must not contain empty entry names"),
    ({"x-reduct-start-ts": "0", "x-reduct-entries": b"caf\xc3\xa9"}, "Invalid entries header"),
    ({"x-reduct-start-ts": "0", "x-reduct-entries": "a%zz"},
     "Invalid entry encoding in header name: 'a%zz'"),
    ({"x-reduct-start-ts": "0", "x-reduct-entries": "a%FF"},
     "Entry name is not valid UTF-8 in header 'a%FF'"),
    ({"x-reduct-entries": "e"}, "x-reduct-start-ts header is required"),
    ({"x-reduct-entries": "e", "x-reduct-start-ts": "-1"}, "Invalid x-reduct-start-ts header"),
    ({"x-reduct-entries": "e", "x-reduct-start-ts": "18446744073709551616"},
     "Invalid x-reduct-start-ts header"),
    ({"x-reduct-start-ts": "0", "x-reduct-0-0": "1,t"},
     "Invalid header 'x-reduct-0-0': entry index out of range"),
])
def test_bad_request_headers(headers, message):
    assert refused(headers) == message


def test_check_order():
    """§1.3: entries, then start-ts, then record headers; §1.7 start-ts first."""
    bad = {"x-reduct-entries": "a,,b", "x-reduct-start-ts": "x", "x-reduct-time-1": "1"}
    assert refused(bad) == "x-reduct-entries header must not contain empty entry names"
    assert refused(bad, start_first=True) == "Invalid x-reduct-start-ts header"
    bad = {"x-reduct-entries": "a", "x-reduct-start-ts": "x", "x-reduct-time-1": "1"}
    assert refused(bad) == "Invalid x-reduct-start-ts header"


def test_label_delta_items():
    assert parse_label_delta(' a = 1 , b="x, y" ,c=,d="",e=z', None) == [
        ("a", "1"), ("b", "x, y"), ("c", ""), ("d", ""), ("e", "z")]
    assert parse_label_delta("0=x,1=y", ["p", "q"]) == [("p", "x"), ("q", "y")]
    assert parse_label_delta("", None) == []
    assert parse_label_delta("a=b=c", None) == [("a", "b=c")]


# -- responses --------------------------------------------------------------------------


def test_encoder_minimal_forms():
    encoder = BatchEncoder()
    rows = [
        encoder.add("x-1", 1000, 3, "text/plain", {}),
        encoder.add("x-1", 1001, 3, "text/plain", {}),
        encoder.add("x-1", 1002, 3, "image/png", {}),
        encoder.add("x-1", 1003, 1, "image/png", {"b": "1", "a": "p,q"}),
        encoder.add("x-1", 1004, 1, "text/plain", {"b": "2"}),
        encoder.add("x-0", 1010, 2, "text/plain", {"a": "z"}),
    ]
    assert rows == [
        (b"x-reduct-0-0", b"3,text/plain"),
        (b"x-reduct-0-1", b"3"),
        (b"x-reduct-0-2", b"3,image/png"),
        (b"x-reduct-0-3", b'1,,0=1,1="p,q"'),
        (b"x-reduct-0-4", b"1,text/plain,0=2,1="),
        (b"x-reduct-1-10", b"2,text/plain,1=z"),
    ]
    assert encoder.headers() == [(b"x-reduct-entries", b"x-1,x-0"),
                                 (b"x-reduct-start-ts", b"1000"),
                                 (b"x-reduct-labels", b"b,a")]


def test_upstream_read_example():
    """Upstream io/read_test: entries by first timestamp; x-reduct-0-0 starts with 3,text/plain."""
    headers = dict(encode_batch([("x/y-1", 1000, 3, "text/plain", {}),
                                 ("x/y-0", 1010, 2, "text/plain", {})]))
    assert headers[b"x-reduct-entries"] == b"x%2Fy-1,x%2Fy-0"
    assert headers[b"x-reduct-start-ts"] == b"1000"
    assert headers[b"x-reduct-0-0"].startswith(b"3,text/plain")
    assert headers[b"x-reduct-1-10"].startswith(b"2,text/plain")
    assert b"x-reduct-labels" not in headers


def test_empty_batch_headers():
    assert encode_batch([]) == [(b"x-reduct-entries", b""), (b"x-reduct-start-ts", b"0")]


def test_error_name():
    assert error_name(1, 2) == b"x-reduct-error-1-2"


# -- round trips --------------------------------------------------------------------------

_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=8)
_value = _text.filter(lambda v: v == v.strip() and not v.startswith('"') and '"' not in v)
_key = _text.filter(lambda k: k == k.strip() and k and not k.startswith("@") and "=" not in k
                    and "," not in k and '"' not in k)
_ctype = st.sampled_from(["text/plain", "application/octet-stream", "image/png; q=1", "x"])
_labels = st.dictionaries(_key, _value.filter(bool), max_size=4)


@st.composite
def _batches(draw):
    names = draw(st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=4, unique=True))
    start = draw(st.integers(0, U64_MAX - 10_000))
    stamps = sorted(draw(st.lists(st.integers(0, 9_999), min_size=1, max_size=20, unique=True)))
    records = []
    for delta in stamps:
        records.append((draw(st.sampled_from(names)), start + delta,
                        draw(st.integers(0, 10**12)), draw(_ctype), draw(_labels)))
    return records


@settings(max_examples=300, deadline=None)
@given(_batches())
def test_encoder_round_trips_through_the_request_parser(records):
    headers = encode_batch(records)
    names = [n for n, _ in headers]
    assert len(names) == len(set(names))
    req = parse_request([(n, [v]) for n, v in headers])
    assert req.start_ts == records[0][1]
    got = sorted((r.entry, r.ts, r.length, r.content_type, r.labels) for r in req.records)
    assert got == sorted(records)
    # entry indexes follow the first appearance, as §1.5 orders them
    first = []
    for record in records:
        if record[0] not in first:
            first.append(record[0])
    assert list(req.entries) == first


@settings(max_examples=200, deadline=None)
@given(_batches())
def test_request_parser_never_raises_anything_but_422(records):
    # cut and mangle the encoded headers: the parser answers or refuses, nothing else
    headers = encode_batch(records)
    for i in range(len(headers)):
        mangled = list(headers)
        name, value = mangled[i]
        mangled[i] = (name, value[: len(value) // 2] + b",=\"")
        try:
            parse_request([(n, [v]) for n, v in mangled])
        except UnprocessableEntity:
            pass


# -- the record headers read as one by one (issue #17) ------------------------------------


def _reference_request(raw_headers):
    """parse_request as it read record headers before #17: names decoded, each value
    through _resolve, frozen-free comparisons by fields."""
    from reduct_twisted.wire import DEFAULT_CONTENT_TYPE, parse_u64
    from reduct_twisted.wire import v2

    headers = v2._single(raw_headers)
    entries, blank = v2._entries(headers)
    start = v2._start(headers)
    found = []
    for name, value in headers.items():
        if name.startswith(b"x-reduct-digest-"):
            continue
        text = name.decode("latin-1")
        head, _, tail = text.rpartition("-")
        if tail and not (tail.isascii() and tail.isdigit()):
            continue
        found.append((text, head[len("x-reduct-"):] if len(head) >= 9 else "", tail, value))
    if blank and found:
        raise UnprocessableEntity("x-reduct-entries header is required")
    names = v2._label_names(headers)
    located = []
    for text, index_text, delta_text, value in found:
        if not (index_text.isascii() and index_text.isdigit()):
            raise UnprocessableEntity(f"Invalid header '{text}': entry index must be a number")
        delta = parse_u64(delta_text)
        if delta is None or start + delta > U64_MAX:
            raise UnprocessableEntity(
                f"Invalid header '{text}': must be an unix timestamp in microseconds")
        index = int(index_text) if len(index_text) <= 20 else len(entries)
        if index >= len(entries):
            raise UnprocessableEntity(f"Invalid header '{text}': entry index out of range")
        located.append((index, delta, start + delta, value))
    located.sort(key=lambda item: (item[0], item[1]))
    records, previous = [], {}
    for index, delta, ts, raw_value in located:
        try:
            value = raw_value.decode("utf-8")
        except UnicodeDecodeError:
            raise UnprocessableEntity("Invalid batched header") from None
        length, ctype, labels, changes = v2._resolve(value, previous.get(index), names)
        previous[index] = (ctype, labels, changes)
        records.append((index, delta, ts, entries[index], length, ctype, labels, changes))
    assert DEFAULT_CONTENT_TYPE
    return tuple(entries), start, records


def _parsed(raw_headers):
    try:
        req = parse_request(raw_headers)
    except UnprocessableEntity as exc:
        return ("refused", exc.message)
    return req.entries, req.start_ts, [
        (r.index, r.delta, r.ts, r.entry, r.length, r.content_type, r.labels, r.changes)
        for r in req.records]


def _reference(raw_headers):
    try:
        return _reference_request(raw_headers)
    except UnprocessableEntity as exc:
        return ("refused", exc.message)


_V2_NAMES = st.sampled_from([b"x-reduct-0-", b"X-Reduct-1-", b"x-reduct-00-", b"x-reduct-",
                             b"x-reduct-a-", b"x-reduct-2-", b"x-reduct-99999999999999999999999-",
                             b"x-reduct-digest-0-", b"x-reduct-label-"])
_V2_DELTAS = st.sampled_from([b"0", b"1", b"2", b"01", b"", b"x", b"\xb2",
                              b"18446744073709551615", b"9" * 21])
_V2_VALUES = st.sampled_from([b"1", b"2", b"007", b"1 ", b" 1", b"x", b"", b"\xff",
                              b"18446744073709551615", b"18446744073709551616", b"9" * 21,
                              b"1,text/plain", b"1,,a=1", b"1,t,0=v", b"1,t,a=", b"3,\xff",
                              b"1,t,@a=1", b"\xd9\xa3"])


@settings(max_examples=800, deadline=None)
@given(st.lists(st.tuples(_V2_NAMES, _V2_DELTAS, _V2_VALUES), max_size=10),
       st.sampled_from([b"a,b,c", b"a", b"", b" "]),
       st.sampled_from([b"0", b"5", b"18446744073709551615", b"x"]),
       st.sampled_from([None, b"l0,l1", b"k"]))
def test_record_headers_read_as_one_by_one(records, entries, start, labels):
    """Generated v2 requests, valid and not: the same plan, or the same refusal, as
    reading every record header on its own with decoded names."""
    raw_headers = [(b"x-reduct-entries", [entries]), (b"x-reduct-start-ts", [start])]
    if labels is not None:
        raw_headers.append((b"x-reduct-labels", [labels]))
    raw_headers += [(name + delta, [value]) for name, delta, value in records]
    assert _parsed(raw_headers) == _reference(raw_headers)


@settings(max_examples=800, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([b"x-reduct-0-", b"x-reduct-00-", b"X-Reduct-1-",
                                           b"x-reduct-2-"]),
                          st.sampled_from([b"0", b"1", b"2", b"01", b"3", b"1 "]),
                          st.sampled_from([b"1", b"2", b"007", b"1,text/plain", b"1,,a=1",
                                           b"5,t,0=v", b"1,t,a=", b"18446744073709551615",
                                           b"18446744073709551616", b"4"])),
                min_size=1, max_size=10))
def test_mostly_valid_record_headers_read_as_one_by_one(records):
    """As above, with requests most of which are valid (the shortcuts are taken)."""
    raw_headers = [(b"x-reduct-entries", [b"a,b,c"]), (b"x-reduct-start-ts", [b"5"]),
                   (b"x-reduct-labels", [b"l0,l1"])]
    raw_headers += [(name + delta, [value]) for name, delta, value in records]
    assert _parsed(raw_headers) == _reference(raw_headers)
