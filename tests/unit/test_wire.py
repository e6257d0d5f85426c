"""
The v1 batch headers: ``x-reduct-time-<ts>`` values as upstream writes
them, as reduct-py and reduct-js send them, and our own values read back.
"""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reduct_twisted.errors import UnprocessableEntity
from reduct_twisted.wire import (
    BatchedRecord,
    format_record_header,
    parse_batch_headers,
    parse_record_header,
    parse_u64,
)
from tests.unit.conftest import error_message


@pytest.mark.parametrize(
    "value, expected",
    [
        ("10,application/octet-stream", (10, "application/octet-stream", {})),
        ("10", None),
        ("0,", (0, "application/octet-stream", {})),
        (" 7 , text/plain ", (7, "text/plain", {})),
        ("3,text/plain,a=1,b=2", (3, "text/plain", {"a": "1", "b": "2"})),
        ('3,,x="[a,b]",y=2', (3, "application/octet-stream", {"x": "[a,b]", "y": "2"})),
        ('3,t, x = "a,b" , y = z ', (3, "t", {"x": "a,b", "y": "z"})),
        ("3,t,a=,b=1", (3, "t", {"a": "", "b": "1"})),
        ("3,t,a=x=y", (3, "t", {"a": "x=y"})),
        # upstream's own examples (reduct_base batch v1 tests)
        ("123, text/plain, label1=value1, label2=value2",
         (123, "text/plain", {"label1": "value1", "label2": "value2"})),
        ('123, text/plain, label1="[1, 2, 3]"', (123, "text/plain", {"label1": "[1, 2, 3]"})),
    ],
)
def test_parse_record_header(value, expected):
    """Upstream's format is read as upstream reads it."""
    if expected is None:
        assert error_message(UnprocessableEntity, parse_record_header, value) == (
            "Invalid batched header"
        )
    else:
        assert parse_record_header(value) == expected


def test_parse_record_header_errors():
    """A bad length or an ``@`` name refuses the whole request with upstream's texts."""
    assert error_message(UnprocessableEntity, parse_record_header, "-1,x") == (
        "Invalid content length"
    )
    assert error_message(UnprocessableEntity, parse_record_header, "abc,x") == (
        "Invalid content length"
    )
    assert error_message(UnprocessableEntity, parse_record_header, "1,x,@a=1") == (
        "Label names must not start with '@': reserved for computed labels"
    )


def test_at_labels_are_ordinary_labels_when_allowed():
    """The v1 batch endpoints (1.19+) take ``@`` names as plain labels; by default they are refused."""
    assert parse_record_header("1,x,@a=1,b=2", at_labels=True) == (1, "x", {"@a": "1", "b": "2"})
    raw = [(b"x-reduct-time-2", [b"0,,@k=v"]), (b"x-reduct-time-1", [b"1,t,@=x"])]
    assert parse_batch_headers(raw, at_labels=True) == [
        BatchedRecord(1, 1, "t", {"@": "x"}),
        BatchedRecord(2, 0, "application/octet-stream", {"@k": "v"}),
    ]
    assert error_message(UnprocessableEntity, parse_batch_headers, raw) == (
        "Label names must not start with '@': reserved for computed labels"
    )


@pytest.mark.parametrize(
    "value, ctype, labels",
    [
        # reduct-py 1.21 writes every value as it is, commas included
        ("3,t,k=a,b", "t", {"k": "a,b"}),
        ("3,t,k=a,b,,c,m=1", "t", {"k": "a,b,,c", "m": "1"}),
        ("3,t,k=1,junk", "t", {"k": "1,junk"}),
        ('3,t,q="x"', "t", {"q": '"x"'}),
        ('3,t,q="open', "t", {"q": '"open'}),
        ('3,t,q="a",b', "t", {"q": '"a",b'}),
        ('3,t,k=a"b', "t", {"k": 'a"b'}),
        ("3,text/x,y,k=v", "text/x,y", {"k": "v"}),
        ('3,multipart/mixed; boundary="a,b",k=v', 'multipart/mixed; boundary="a,b"', {"k": "v"}),
        ("3,t,junk", "t,junk", {}),
        # reduct-js 1.20 quotes a value with a comma, and nothing else
        ('3,t,k="a,b",m=1', "t", {"k": "a,b", "m": "1"}),
        ('3,t,k="a",b"', "t", {"k": 'a",b'}),
        # reduct-py writes the values "x" and "y" of two labels
        ('3,t,a="x",b="y"', "t", {"a": '"x"', "b": '"y"'}),
        ('3,t,a="x",b=1,c=y"', "t", {"a": '"x"', "b": "1", "c": 'y"'}),
        ('3,t,k=""a,b""', "t", {"k": '"a,b"'}),
        ('3,t,k=""",m=1', "t", {"k": '"""', "m": "1"}),
    ],
)
def test_parse_client_encodings(value, ctype, labels):
    """What the official clients send for values with commas and quotes is read as meant."""
    assert parse_record_header(value) == (3, ctype, labels)


TRICKY = [
    "a,b",
    "[1, 2, 3]",
    'say "hi"',
    '"quoted"',
    '"open',
    'close"',
    'a",b',
    'x,a",b',
    'x,b=1,c=2',
    '",",',
    "x=y",
    "a=b,c=d",
    "a b  c",
    "grüße €",
    "",
    ",",
    ",,",
    '"',
]


@pytest.mark.parametrize("value", TRICKY)
def test_label_round_trip(value):
    """Each of these label values is written so that our parser reads it back unchanged."""
    header = format_record_header(5, "text/plain", {"k": value, "a": "1", "z": "2"})
    assert parse_record_header(header.decode("utf-8")) == (
        5, "text/plain", {"k": value, "a": "1", "z": "2"}
    )


def test_all_tricky_labels_in_one_header_round_trip():
    """All of them at once, whatever their order: none closes another's quote."""
    labels = {f"n{i}": value for i, value in enumerate(TRICKY)}
    labels.update({"zz": 'end"', "aa": '"start'})
    header = format_record_header(5, "text/plain", labels)
    assert parse_record_header(header.decode("utf-8")) == (5, "text/plain", labels)
    assert header.endswith(b',n17=",aa="start,n4="open')


@pytest.mark.parametrize(
    "value, read",
    [
        # written as k="a",b=c": a "-closed first field followed by a label
        ('a",b=c', {"k": '"a"', "b": 'c"'}),
    ],
)
def test_label_values_the_protocol_cannot_carry(value, read):
    """Documented limits (README): these values read back as other labels."""
    header = format_record_header(5, "t", {"k": value})
    assert parse_record_header(header.decode("utf-8")) == (5, "t", read)


@pytest.mark.parametrize(
    "ctype",
    ["text/plain", 'text/plain; charset="utf-8"', "application/x; a=1,b=2",
     'multipart/mixed; boundary="x,y"', "a,b,c=d", '"odd"'],
)
def test_content_type_round_trip(ctype):
    """A content type with a comma is quoted and never reads back as labels."""
    header = format_record_header(1, ctype, {"k": "v"})
    assert parse_record_header(header.decode("utf-8")) == (1, ctype, {"k": "v"})


def test_format_record_header():
    """Upstream's format: quotes only around a value with a comma, labels sorted, nothing escaped."""
    labels = {"z": "1", "a": "b,c", "m": '"q"', "n": 'x",y'}
    assert format_record_header(12, "text/plain", labels) == (
        b'12,text/plain,a="b,c",m="q",n="x",y",z=1'
    )
    assert format_record_header(0, "application/octet-stream", {}) == (
        b"0,application/octet-stream"
    )
    assert format_record_header(3, "a/b; x=1,y=2", {}) == b'3,"a/b; x=1,y=2"'
    assert format_record_header(0, "", {"gone": ""}) == b"0,,gone="
    assert format_record_header(1, "t", {"u": "ü"}) == "1,t,u=ü".encode("utf-8")


def test_parse_batch_headers_sorts_and_matches_names_case_insensitively():
    """Records come sorted by timestamp; names match in any case; the last repeat wins."""
    raw = [
        (b"Content-Type", [b"application/octet-stream"]),
        (b"X-Reduct-Time-30", [b"1,a"]),
        (b"x-reduct-time-10", [b"2,b,k=v"]),
        (b"X-Reduct-Label-x", [b"ignored"]),
        (b"X-REDUCT-TIME-20", [b"0,c", b"3,d"]),
        (b"x-reduct-time-40", ['0,e,u="grüße, €"'.encode("utf-8")]),
    ]
    assert parse_batch_headers(raw) == [
        BatchedRecord(10, 2, "b", {"k": "v"}),
        BatchedRecord(20, 3, "d", {}),
        BatchedRecord(30, 1, "a", {}),
        BatchedRecord(40, 0, "e", {"u": "grüße, €"}),
    ]
    for name in (b"x-reduct-time-", b"x-reduct-time--1", b"x-reduct-time-18446744073709551616"):
        message = error_message(UnprocessableEntity, parse_batch_headers, [(name, [b"1,"])])
        assert message == (
            f"Invalid header '{name.decode()}': must be an unix timestamp in microseconds"
        )
    assert error_message(
        UnprocessableEntity, parse_batch_headers, [(b"x-reduct-time-1", [b"1,t,k=\xff"])]
    ) == "Invalid batched header"


# -- parse_batch_headers: each distinct text after the length parsed once (issue #17) ------


def _reference_batch(raw_headers, at_labels):
    """The records as a plain per-record parse reads them (the behaviour before #17)."""
    found = {}
    for name, values in raw_headers:
        lname = name.lower()
        if not lname.startswith(b"x-reduct-time-") or not values:
            continue
        ts = parse_u64(lname[len(b"x-reduct-time-"):].decode("latin-1"))
        if ts is None:
            raise UnprocessableEntity(
                f"Invalid header '{lname.decode('latin-1')}': "
                "must be an unix timestamp in microseconds"
            )
        found[ts] = values[-1]
    records = []
    for ts, raw in sorted(found.items()):
        try:
            value = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise UnprocessableEntity("Invalid batched header") from None
        records.append(BatchedRecord(ts, *parse_record_header(value, at_labels)))
    return records


def _outcome(fn, *args):
    try:
        return fn(*args)
    except UnprocessableEntity as exc:
        return ("refused", exc.message)


_STAMPS = st.sampled_from([b"1", b"2", b"3", b"02", b"10", b"", b"x", b"-1", b"\xb2", b"1 ",
                           b"18446744073709551615", b"18446744073709551616", b"0" * 25 + b"7"])
_PREFIXES = st.sampled_from([b"x-reduct-time-", b"X-Reduct-Time-", b"X-REDUCT-TIME-",
                             b"x-reduct-label-", b"content-"])
_LENGTHS = st.sampled_from([b"1", b"0", b"007", b" 2", b"2 ", b"x", b"-1", b"", b"1.0",
                            b"18446744073709551615", b"18446744073709551616", b"\xc2\xa03",
                            b"\xd9\xa3", b"\xff", b"3" * 21])
_TAILS = st.sampled_from([b"", b",", b",t", b",t,a=1", b",t,a=1,b=2", b',x,q="a,b"', b",t,@a=1",
                          b",,k=v", b",t,k=\xff", b",t,u=\xc3\xa4", b",t,a=1,junk", b",\xff",
                          b',"t,u",a="x"'])


@settings(max_examples=800, deadline=None)
@given(st.lists(st.tuples(_PREFIXES, _STAMPS, st.lists(st.tuples(_LENGTHS, _TAILS).map(
    b"".join), min_size=1, max_size=2)), max_size=8), st.booleans())
def test_batch_headers_read_as_record_by_record(headers, at_labels):
    """Generated header tables, valid and not: the same records, or the same refusal, as
    parsing every record header on its own."""
    raw = [(prefix + stamp, values) for prefix, stamp, values in headers]
    assert _outcome(parse_batch_headers, raw, at_labels) == _outcome(
        _reference_batch, raw, at_labels)


def test_records_of_a_repeated_text_own_their_labels():
    """Records sharing a content type and label text get equal, separate label dicts."""
    raw = [(b"x-reduct-time-%d" % ts, [b"%d,t,a=1,b=2" % ts]) for ts in range(1, 4)]
    records = parse_batch_headers(raw)
    assert [r.length for r in records] == [1, 2, 3]
    assert all(r.labels == {"a": "1", "b": "2"} for r in records)
    records[1].labels["c"] = "3"
    assert records[0].labels == records[2].labels == {"a": "1", "b": "2"}
    assert parse_batch_headers(raw)[0].labels == {"a": "1", "b": "2"}


@pytest.mark.parametrize("at_labels", [False, True])
@pytest.mark.parametrize(
    "values",
    [
        [b"5,", b"5"],  # a text without comma after one with an empty rest
        [b"5,t", b"x,t"],
        [b"5,t", b"-5,t"],
        [b"5,t", b"18446744073709551616,t"],
        [b"5,t", b"\xc2\xa05,t"],  # a blank Python's str.strip takes, bytes' not
        [b"5,t", b"\xff,t"],
        [b"5,t,@a=1", b"6,t,@a=1"],
        [b"5,t,a=\xff", b"6,t,a=\xff"],
    ],
)
def test_a_repeated_text_after_a_bad_or_odd_length(values, at_labels):
    """The record after one with the same text is read as on its own, refusals included."""
    raw = [(b"x-reduct-time-%d" % (i + 1), [value]) for i, value in enumerate(values)]
    assert _outcome(parse_batch_headers, raw, at_labels) == _outcome(
        _reference_batch, raw, at_labels)
