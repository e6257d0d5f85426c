# -*- test-case-name: tests.unit.test_channel_headers -*-
"""
A request's header block split in one pass, for ``ReductChannel``.

twisted.web's ``HTTPChannel`` takes a request's headers one line at a
time: ``LineReceiver`` cuts each line off the front of its buffer (a copy
of everything behind it, body bytes included), ``lineReceived`` and
``headerReceived`` check it, and ``Headers.addRawHeader`` files it, after
``_NameEncoder`` has checked the name byte by byte in Python (twice: once
in ``headerReceived``, once more in ``addRawHeader``; its cache of names
fills up with the timestamps of batched records and then helps no more).
A batched write of 80 records carries some 85 headers, which made this
about 9 µs of CPU per record.

:func:`split_header_block` does the same work for a whole block at once
and accepts only what Twisted accepts *without any special case*: any
line it has a doubt about makes it answer None, and the channel then
lets Twisted parse the request line by line as before, so every refusal
(and every oddity Twisted tolerates) stays Twisted's own.  What it
checks, against ``HTTPChannel.lineReceived`` and ``headerReceived``
(Twisted 26.10):

* no line longer than ``MAX_LENGTH`` (``LineReceiver.lineLengthExceeded``);
* no NUL, and no CR or LF other than the line ends (Twisted refuses a
  value holding one, RFC 9110 §5.5);
* every line holds a colon and the name before the first one is a
  non-empty token (RFC 9110 §5.6.2, ``_abnf._istoken``); so no line starts
  with a space or tab (obs-fold, which Twisted joins to the header before:
  rare enough to leave to Twisted);
* the value is the text after the first colon without surrounding spaces
  and tabs (``data.strip(b" \\t")``); Twisted's ``_sanitizeLinearWhitespace``
  only changes values holding CR or LF, which never get here.

The caller checks what depends on the connection: the header count
(``maxHeaders``), the header bytes (``totalHeadersSize``) and the framing
headers (``Content-Length``, ``Transfer-Encoding``).

Names are filed under Twisted's canonical spelling (``_NameEncoder``:
each ``-``-separated word capitalized, then a few special spellings such
as ``ETag``), so ``Headers.getRawHeaders`` and friends find them, and in
the order of their first appearance, as ``addRawHeader`` files them.
"""

from typing import Dict, List, Optional

from twisted.web.http_headers import _NameEncoder

#: The bytes of a token (RFC 9110 §5.6.2): what ``_abnf._istoken`` accepts.
TOKEN_BYTES = (
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+-.^_`|~"
)

#: Twisted's special spellings (``Content-MD5``, ``ETag``, ``WWW-Authenticate``...).
_SPECIAL = dict(_NameEncoder._caseMappings)

#: The canonical spelling of a name's part before its last ``-``, that
#: ``-`` included (the special spellings not applied: they concern whole
#: names).  Batches repeat few of them (``x-reduct-time-``,
#: ``x-reduct-label-``...); the cache is bounded all the same, in entries
#: and in their length, against a client inventing names (a head is
#: cached before its name is checked: at most 4096 x 64 bytes of junk).
_HEADS: Dict[bytes, bytes] = {}
_HEADS_MAX = 4096
_HEAD_MAX_LENGTH = 64


def _head(head: bytes) -> bytes:
    spelled = b"-".join([word.capitalize() for word in head.split(b"-")]) + b"-"
    if len(_HEADS) < _HEADS_MAX and len(head) <= _HEAD_MAX_LENGTH:
        _HEADS[head] = spelled
    return spelled


def canonical_name(name: bytes) -> bytes:
    """
    ``name`` (a token) as ``twisted.web.http_headers._nameEncoder.encode``
    spells it: ``x-reduct-time-1`` is ``X-Reduct-Time-1``.

    Capitalizing word by word, the spelling of ``a-b`` is that of ``a``,
    ``-`` and that of ``b``: the head before the last ``-`` comes from a
    small cache, only the last word is capitalized each time.
    (:func:`split_header_block` does the same, inline.)
    """
    head, dash, tail = name.rpartition(b"-")
    spelled = (_HEADS.get(head) or _head(head)) if dash else b""
    spelled += tail.capitalize()
    return _SPECIAL.get(spelled, spelled)


def split_header_block(block: bytes, max_line: int) -> Optional[Dict[bytes, List[bytes]]]:
    """
    The header lines of a request (``block``: from the line after the
    request line up to, without, the CRLF that ends the last one; not
    empty), as ``Headers._rawHeaders`` holds them: canonical name ->
    values in order.

    :param max_line: the longest line allowed (``LineReceiver.MAX_LENGTH``).
    :return: None for anything Twisted would refuse or treat specially
        (see the module docstring): the caller then leaves the block to
        Twisted's line-by-line parser.
    """
    lines = block.split(b"\r\n")
    ends = len(lines) - 1
    if (
        block.count(b"\r") != ends
        or block.count(b"\n") != ends
        or b"\x00" in block
        or max(map(len, lines)) > max_line
    ):
        return None
    raw: Dict[bytes, List[bytes]] = {}
    names = []
    heads, special = _HEADS, _SPECIAL
    for line in lines:
        name, colon, value = line.partition(b":")
        if not colon or not name:
            return None
        names.append(name)
        # canonical_name(name), inline
        head, dash, tail = name.rpartition(b"-")
        spelled = (heads.get(head) or _head(head)) if dash else b""
        spelled += tail.capitalize()
        spelled = special.get(spelled, spelled)
        values = raw.get(spelled)
        if values is None:
            raw[spelled] = [value.strip(b" \t")]
        else:
            values.append(value.strip(b" \t"))
    # One check of every name's bytes (_istoken, in C).
    if b"".join(names).translate(None, TOKEN_BYTES):
        return None
    return raw
