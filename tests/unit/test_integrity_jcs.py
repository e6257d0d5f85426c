"""
RFC 8785 canonical JSON (``reduct_twisted.integrity.jcs``), checked with
the RFC's own examples: §3.2.2 (primitives), §3.2.3 (sorting), Appendix B
(numbers).
"""

import json
import struct

import pytest

from reduct_twisted.integrity.jcs import canonical, number

# §3.2.2: the input and its canonical form (as the RFC prints it, and in the
# bytes of §3.2.4).
RFC_INPUT = r'''{
  "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}'''
RFC_OUTPUT = ('{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
              '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}')
RFC_OUTPUT_BYTES = bytes.fromhex(
    "7b 22 6c 69 74 65 72 61 6c 73 22 3a 5b 6e 75 6c 6c 2c 74 72"
    " 75 65 2c 66 61 6c 73 65 5d 2c 22 6e 75 6d 62 65 72 73 22 3a"
    " 5b 33 33 33 33 33 33 33 33 33 2e 33 33 33 33 33 33 33 2c 31"
    " 65 2b 33 30 2c 34 2e 35 2c 30 2e 30 30 32 2c 31 65 2d 32 37"
    " 5d 2c 22 73 74 72 69 6e 67 22 3a 22 e2 82 ac 24 5c 75 30 30"
    " 30 66 5c 6e 41 27 42 5c 22 5c 5c 5c 5c 5c 22 2f 22 7d".replace(" ", "")
)

# §3.2.3: property names sorted by UTF-16 code units.
RFC_SORT_INPUT = r'''{
  "\u20ac": "Euro Sign",
  "\r": "Carriage Return",
  "\ufb33": "Hebrew Letter Dalet With Dagesh",
  "1": "One",
  "\ud83d\ude00": "Emoji: Grinning Face",
  "\u0080": "Control",
  "\u00f6": "Latin Small Letter O With Diaeresis"
}'''
RFC_SORT_VALUES = ["Carriage Return", "One", "Control", "Latin Small Letter O With Diaeresis",
                   "Euro Sign", "Emoji: Grinning Face", "Hebrew Letter Dalet With Dagesh"]

# Appendix B: IEEE 754 bit patterns and their canonical text.
APPENDIX_B = [
    ("0000000000000000", "0"), ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"), ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"), ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"), ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"), ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"), ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"), ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"), ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"), ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


def test_rfc_primitives_example():
    """§3.2.2's input canonicalises to the output §3.2.2 and §3.2.4 give."""
    out = canonical(json.loads(RFC_INPUT))
    assert out == RFC_OUTPUT.encode("utf-8")
    assert out == RFC_OUTPUT_BYTES


def test_rfc_sorting_example():
    """§3.2.3: names sort by UTF-16 code units (the emoji's surrogates before U+FB33)."""
    out = canonical(json.loads(RFC_SORT_INPUT))
    assert [v for v in json.loads(out).values()] == RFC_SORT_VALUES
    assert out.startswith(b'{"\\r":"Carriage Return","1":"One","\xc2\x80":"Control"')
    # code point order would put U+FB33 before U+1F600: UTF-16 puts it after
    assert out.index("\U0001F600".encode()) < out.index("\ufb33".encode())


@pytest.mark.parametrize("bits, text", APPENDIX_B)
def test_appendix_b_numbers(bits, text):
    value = struct.unpack(">d", bytes.fromhex(bits))[0]
    assert number(value) == text
    assert canonical([value]) == b"[" + text.encode() + b"]"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_refused(value):
    with pytest.raises(ValueError):
        canonical({"x": value})


def test_more_numbers():
    """Integral doubles, the fixed/exponent switch at 1e21 and 1e-7, ints."""
    cases = {1.0: "1", 100.0: "100", 0.5: "0.5", 1e-6: "0.000001", 1e-7: "1e-7",
             1.5e-7: "1.5e-7", 123.456: "123.456", 1e20: "100000000000000000000",
             1.2e21: "1.2e+21", -0.0: "0", 0.1 + 0.2: "0.30000000000000004"}
    for value, text in cases.items():
        assert number(value) == text, value
    assert canonical([0, -1, 2 ** 53 - 1, -(2 ** 53 - 1)]) == b"[0,-1,9007199254740991,-9007199254740991]"


@pytest.mark.parametrize("value", [2 ** 53, -(2 ** 53), 10 ** 30])
def test_unsafe_ints_refused(value):
    with pytest.raises(ValueError, match="I-JSON"):
        canonical(value)


def test_string_escapes():
    """§3.2.2.2: the short escapes, \\u00xx lowercase for the other controls, nothing else."""
    controls = "".join(chr(c) for c in range(0x20))
    out = canonical(controls + '"\\/\x7f\u2028\u00e9\U0001F600')
    expected = ('"\\u0000\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t\\n\\u000b\\f\\r'
                '\\u000e\\u000f\\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017\\u0018'
                '\\u0019\\u001a\\u001b\\u001c\\u001d\\u001e\\u001f\\"\\\\/\x7f\u2028\u00e9\U0001F600"')
    assert out == expected.encode("utf-8")
    assert json.loads(out) == controls + '"\\/\x7f\u2028\u00e9\U0001F600'


def test_structure():
    assert canonical({}) == b"{}"
    assert canonical([]) == b"[]"
    assert canonical({"b": [1, {"d": None, "c": True}], "a": "x"}) == b'{"a":"x","b":[1,{"c":true,"d":null}]}'
    assert canonical((1, 2)) == b"[1,2]"


@pytest.mark.parametrize("bad", [
    {1: "x"}, b"bytes", object(), {"x": {1, 2}}, "\ud800", {"\udc00": 1},
])
def test_refused(bad):
    with pytest.raises(ValueError):
        canonical(bad)


def test_agrees_with_sorted_json_for_ascii():
    """For ASCII names and safe values the result is json.dumps with sorted keys, compact."""
    obj = {"number": 7, "timestamp": 1_700_000_000_000_000, "labels": {"b": "2", "a": "1"},
           "content_type": "text/plain", "size": 1024, "digest": "sha-256:" + "ab" * 32}
    assert canonical(obj) == json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def rule_3222(char: str) -> str:
    """§3.2.2.2 for one character, written from the RFC's text."""
    short = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r", '"': '\\"', "\\": "\\\\"}
    if char in short:
        return short[char]
    if ord(char) < 0x20:
        return "\\u%04x" % ord(char)
    return char


def test_every_code_point_escaped_as_the_rfc_says():
    for c in list(range(0xD800)) + list(range(0xE000, 0x10000)) + list(range(0x10000, 0x110000, 97)):
        char = chr(c)
        assert canonical(char) == ('"' + rule_3222(char) + '"').encode("utf-8"), hex(c)
