"""
The v1 batch headers: ``x-reduct-time-<ts>`` values as upstream writes
them, as reduct-py and reduct-js send them, and our own values read back.
"""

import pytest

from reduct_twisted.errors import UnprocessableEntity
from reduct_twisted.wire import (
    BatchedRecord,
    format_record_header,
    parse_batch_headers,
    parse_record_header,
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
