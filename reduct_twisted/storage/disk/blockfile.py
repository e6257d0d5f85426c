"""
The on-disk format of one block: file names, the ``.meta`` line format and
the statistics size of a record's metadata.

A block ``<id>`` of an entry is made of these files in the entry directory::

    <id>.meta        metadata, append-only JSON lines (below)
    <id>.blk         shared segment: contents of small records back to back
    <id>-<ts>.blk    private segment: the content of the one record <ts>
    <id>-<gen>.zst   packed segment: compressed records, one zstd frame each
                     (``packed.py``)

``<id>.meta`` layout (one compact JSON object per line, ASCII with ``\\uXXXX``
escapes, each line ending in ``\\n``; every line has a kind key ``"k"`` the
reader dispatches on)::

    line 1      {"k":"h","format":"reduct-twisted-block","version":2,"block":<id>}
    line 2..n   {"k":"r","ts":<µs>,"seg":"<file name>","off":<bytes>,"size":<bytes>,
                 "ct":"<content type>","labels":[["<name>","<value>"], ...],
                 "crc":<CRC-32 of the content>[,"z":<frame length>]
                 [,"n":<entry number>][,"sha256":"<64 lowercase hex>"]}

* ``"h"`` (header) is always the first line and names the format and its
  version (:data:`FORMAT_VERSION`) and repeats the block id.
* ``"r"`` (record) is appended once per *finished* record, in commit order;
  ``seg`` is ``<id>.blk`` or ``<id>-<ts>.blk``, ``off`` the content's offset
  in it, labels keep their insertion order, ``crc`` is ``zlib.crc32`` of the
  ``size`` content bytes.  Records being written are never on disk.
* ``"z"`` (version 3) marks a compressed record: ``seg`` is a packed
  segment ``<id>-<gen>.zst``, ``off`` its frame's offset, ``z`` the frame's
  length, ``size`` and ``crc`` those of the content.  A file holding such a
  line has a version-3 header (it is written whole, by a compression or a
  rewrite), so a daemon that reads only versions 1–2 refuses it
  (:class:`UnsupportedMeta`) instead of taking the block for damaged;
  files without compressed records keep the version-2 header.
* ``"n"`` is the record's entry number and ``"sha256"`` the SHA-256 of its
  content (issue #16): lines of records stored before them have neither,
  a record written with ``integrity=off`` has no ``"sha256"``.  A build
  that predates them is kept off the directory by the data directory
  marker (``layout.py``, version 3), not by this header's version.
* Version 1 (before checksums) is still read: its lines have no ``crc`` and
  their content is trusted.  Lines with ``crc`` may follow a version-1
  header (records appended by this version); the header is not rewritten.
* Removing records rewrites the whole file without their lines
  (:func:`replace_meta`: a temporary file renamed over the old one).
* Later kinds (e.g. label updates) are appended the same way and
  replayed in file order; a reader meeting a kind it does not know treats
  the file as damaged rather than guess (a newer writer bumps the version).
* A last line without its ``\\n`` is a torn append; it is ignored and cut off
  when the block is opened.  Any other bad line, or a bad header, makes the
  file damaged (:class:`DamagedMeta`: the engine quarantines the block); a
  header of a newer version is refused (:class:`UnsupportedMeta`).
"""

import contextlib
import functools
import json
import os
import re

from reduct_twisted.errors import InternalError
from reduct_twisted.storage.disk.metalines import fast_table
from reduct_twisted.storage.disk.packed import PACKED_SUFFIX
from reduct_twisted.storage.records import FINISHED, Record

#: The ``format`` value of a ``.meta`` header.
FORMAT_NAME = "reduct-twisted-block"
#: The newest version of the ``.meta`` line format (written when a block
#: holds compressed records; version 2 otherwise).
FORMAT_VERSION = 3
#: The version of a ``.meta`` without compressed records.
PLAIN_VERSION = 2
#: Header versions this code reads.
READABLE_VERSIONS = (1, 2, 3)

#: Suffix of a block's metadata file.
META_SUFFIX = ".meta"
#: Suffix of a data (segment) file.
DATA_SUFFIX = ".blk"


class DamagedMeta(InternalError):
    """A ``.meta`` file whose header or a complete line cannot be read."""


class UnsupportedMeta(InternalError):
    """A ``.meta`` file written by a newer format version."""


_HEX64 = re.compile(r"[0-9a-f]{64}")
_FILE_RE = re.compile(r"(\d{1,20})(?:-(\d{1,20}))?(\.meta|\.blk|\.zst)")


def meta_name(block_id: int) -> str:
    """:return: the metadata file name of block ``block_id``."""
    return f"{block_id}{META_SUFFIX}"


def shared_name(block_id: int) -> str:
    """:return: the shared segment file name of block ``block_id``."""
    return f"{block_id}{DATA_SUFFIX}"


def private_name(block_id: int, ts: int) -> str:
    """:return: the private segment file name of record ``ts`` in block ``block_id``."""
    return f"{block_id}-{ts}{DATA_SUFFIX}"


@functools.lru_cache(maxsize=4096)  # segment names repeat on every record line
def classify(name: str):
    """
    Recognise a block file name.

    :param name: a file name found in an entry directory.
    :return: ``(block_id, ts, suffix)``, where ``ts`` is ``None`` unless the
        name is a private segment (or, for a packed segment, its
        generation); ``None`` for anything else.
    """
    match = _FILE_RE.fullmatch(name)
    if match is None:
        return None
    block_id, ts, suffix = match.groups()
    if (suffix == META_SUFFIX and ts is not None) or (suffix == PACKED_SUFFIX and ts is None):
        return None
    return int(block_id), (None if ts is None else int(ts)), suffix


#: A string as compact ASCII-only JSON (what ``json.dumps`` uses).
_json_str = json.encoder.encode_basestring_ascii


def _line(obj: dict) -> bytes:
    # ASCII-only JSON: any string (even one with lone surrogates) round-trips.
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode("ascii")


def encode_header(block_id: int, version: int = PLAIN_VERSION) -> bytes:
    """:return: the header line of a new ``.meta`` file."""
    return _line({"k": "h", "format": FORMAT_NAME, "version": version, "block": block_id})


#: Label sets as their ``.meta`` JSON, by ``tuple(labels.items())``: the
#: records of a batch mostly share theirs (cleared when it grows too big).
_LABELS_JSON: dict = {}


def _labels_json(labels: dict) -> str:
    key = tuple(labels.items())
    text = _LABELS_JSON.get(key)
    if text is None:
        if len(_LABELS_JSON) >= 1024:
            _LABELS_JSON.clear()
        text = _LABELS_JSON[key] = ",".join(
            f"[{_json_str(name)},{_json_str(value)}]" for name, value in key)
    return text


def encode_record(record: Record, size: int) -> bytes:
    """
    :param record: the record (its ``crc``, if not ``None``, is written).
    :param size: its final content length.
    :return: the ``"r"`` line describing the record once finished (the
        bytes :func:`_line` would make of it, built without ``json.dumps``:
        this runs once per record written).
    """
    labels = _labels_json(record.labels)
    crc = "" if record.crc is None else f',"crc":{int(record.crc)}'
    if record.zsize is not None:
        crc += f',"z":{int(record.zsize)}'
    if record.number is not None:
        crc += f',"n":{int(record.number)}'
    if record.digest is not None:
        crc += f',"sha256":"{record.digest.hex()}"'
    return (
        f'{{"k":"r","ts":{int(record.ts)},"seg":{_json_str(record.segment)},'
        f'"off":{int(record.offset)},"size":{int(size)},"ct":{_json_str(record.content_type)},'
        f'"labels":[{labels}]{crc}}}\n'
    ).encode("ascii")


def encode_meta(block_id: int, records) -> bytes:
    """:return: a whole ``.meta`` file holding ``records`` (finished), in the given order."""
    records = list(records)
    packed = any(r.zsize is not None for r in records)
    header = encode_header(block_id, FORMAT_VERSION if packed else PLAIN_VERSION)
    return header + b"".join(encode_record(r, r.size) for r in records)


def write_at(fds, path: str, offset: int, data: bytes) -> None:
    """
    Write all of ``data`` at ``offset`` of ``path`` through the descriptor
    cache ``fds`` (one ``pwrite`` per call, short writes go on).  At offset 0
    the file is emptied first (a stale file must not leave old lines behind
    the new ones).
    """
    slot = fds.acquire(path)
    try:
        if not offset:
            os.ftruncate(slot.fd, 0)
        view = memoryview(data)
        while view:
            written = os.pwrite(slot.fd, view, offset)
            view, offset = view[written:], offset + written
    finally:
        fds.release(slot)


def replace_meta(path: str, block_id: int, records) -> int:
    """
    Replace a ``.meta`` file by one holding ``records`` (finished, written
    in ascending timestamp order): written to ``<path>.tmp``, then renamed
    over ``path``, so a crash leaves the old file or the new one.

    :return: the new file's length.
    :raises OSError: nothing was replaced (and no ``.tmp`` is left).
    """
    data = encode_meta(block_id, sorted(records, key=lambda r: r.ts))
    replace_file(path, data)
    return len(data)


def replace_file(path: str, data: bytes) -> None:
    """
    Replace ``path`` by ``data`` at once: written to ``<path>.tmp``, then
    renamed over ``path``, so a crash leaves the old file or the new one
    (flushing is the group sync's job: the caller marks the file and its
    directory dirty).

    :raises OSError: nothing was replaced, and no ``.tmp`` is left.
    """
    try:
        with open(path + ".tmp", "wb") as f:
            f.write(data)
        os.replace(path + ".tmp", path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(path + ".tmp")
        raise


def _uint(value) -> int:
    if type(value) is not int or value < 0:
        raise ValueError(value)
    return value


def _apply_header(table: dict, obj: dict, block_id: int) -> None:
    raise ValueError("header line after the first line")


def _apply_record(table: dict, obj: dict, block_id: int) -> None:
    ts = _uint(obj["ts"])
    found = classify(obj["seg"])
    zsize = obj.get("z")
    if zsize is not None:
        zsize = _uint(zsize)
        good = found is not None and found[2] == PACKED_SUFFIX
    else:
        good = found is not None and found[2] == DATA_SUFFIX and found[1] in (None, ts)
    if not good or found[0] != block_id:
        raise ValueError(f"bad segment {obj['seg']!r}")
    labels = {str(name): str(value) for name, value in obj["labels"]}
    content_type = obj["ct"]
    if not isinstance(content_type, str):
        raise ValueError("content type")
    crc = obj.get("crc")
    if crc is not None and _uint(crc) > 0xFFFFFFFF:
        raise ValueError(f"bad crc {crc!r}")
    number, digest = obj.get("n"), obj.get("sha256")
    if number is not None and _uint(number) < 1:
        raise ValueError(f"bad entry number {number!r}")
    if digest is not None:
        if not isinstance(digest, str) or _HEX64.fullmatch(digest) is None:
            raise ValueError(f"bad sha256 {digest!r}")
        digest = bytes.fromhex(digest)
    table[ts] = Record(
        ts, obj["seg"], _uint(obj["off"]), _uint(obj["size"]), content_type, labels, FINISHED,
        crc, zsize, number, digest,
    )


#: Line kind -> handler(table, line object, block id), replayed in file order.
_LINE_KINDS = {"h": _apply_header, "r": _apply_record}


def _check_header(obj, block_id: int, path: str) -> None:
    if not isinstance(obj, dict) or obj.get("k") != "h" or obj.get("format") != FORMAT_NAME:
        raise ValueError("not a block metadata file")
    version = obj.get("version")
    if type(version) is int and version > FORMAT_VERSION:
        raise UnsupportedMeta(
            f"Block metadata '{path}' has format version {version}; "
            f"this version reads {', '.join(map(str, READABLE_VERSIONS))}"
        )
    if version not in READABLE_VERSIONS:
        raise ValueError(f"unsupported format version {version!r}")
    if obj.get("block") != block_id:
        raise ValueError(f"header names block {obj.get('block')!r}")


def read_meta(path: str, block_id: int):
    """
    Read and replay a ``.meta`` file.

    :param path: the file to read.
    :param block_id: the block id its name carries.
    :return: ``(table, valid_length)``: the records by timestamp and the
        number of bytes up to the end of the last complete line (less than
        the file size if the last append was torn).
    :raises DamagedMeta: the header or a complete line is invalid.
    :raises UnsupportedMeta: the header names a newer format version.
    """
    with open(path, "rb") as f:
        data = f.read()
    end = data.rfind(b"\n") + 1
    table: dict = {}
    if not end:  # not even a complete header: the block never got a record
        return table, 0
    try:
        head = data.find(b"\n") + 1
        _check_header(json.loads(data[:head]), block_id, path)
        fast = fast_table(data, head, end, block_id, classify, DATA_SUFFIX)
        if fast is not None:  # (metalines.py: the lines as written, without a replay)
            return fast, end
        for raw in data[head:end].split(b"\n")[:-1]:
            obj = json.loads(raw)
            _LINE_KINDS[obj["k"]](table, obj, block_id)
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as e:
        raise DamagedMeta(f"Corrupt block metadata '{path}': {e!r}") from None
    return table, end


def _str_field_len(text: str) -> int:
    # A length-delimited protobuf field with a one-byte tag (none when empty).
    size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
    return 1 + ((size.bit_length() + 6) // 7) + size if size else 0


def record_meta_size(ts: int, begin: int, end: int, content_type: str, labels: dict) -> int:
    """
    The "metadata" part of the ``size`` statistics (spec §4.5, 1.11+).

    It is the protobuf-encoded length of upstream's
    ``Record{timestamp, begin, end, state=0, labels, content_type}``, which
    reproduces the sizes clients see (``"somedata"`` at 1 000 000 → 32 + 8).

    :param ts: the record's timestamp (µs).
    :param begin: the content's offset in its segment.
    :param end: ``begin`` plus the content length.
    :param content_type: the record's content type.
    :param labels: the record's labels.
    :return: the size in bytes.
    """
    if not labels:
        return meta_fixed_size(ts, begin, end) + _str_field_len(content_type)
    return meta_fixed_size(ts, begin, end) + meta_fields_size(content_type, labels)


def meta_fixed_size(ts: int, begin: int, end: int) -> int:
    """The share of the timestamp, ``begin`` and ``end`` in :func:`record_meta_size`."""
    # Inlined (this runs for every record read and written): an integer
    # field is a tag byte and a varint of (bit length + 6) // 7 bytes, absent
    # when 0; a length-delimited field is a tag, the varint of its length
    # (at least one byte), then the bytes.
    seconds, micros = divmod(ts, 1_000_000)
    nanos = micros * 1000
    timestamp = ((1 + (seconds.bit_length() + 6) // 7) if seconds else 0) + (
        (1 + (nanos.bit_length() + 6) // 7) if nanos else 0)
    return 1 + ((timestamp.bit_length() + 6) // 7 or 1) + timestamp + (
        1 + (begin.bit_length() + 6) // 7 if begin else 0) + (
        1 + (end.bit_length() + 6) // 7 if end else 0)


def meta_fields_size(content_type: str, labels: dict) -> int:
    """The share of the content type and labels in :func:`record_meta_size`."""
    key = (content_type, *labels.items())
    fields = _FIELDS_SIZE.get(key)
    if fields is None:
        if len(_FIELDS_SIZE) >= 1024:
            _FIELDS_SIZE.clear()
        fields = _str_field_len(content_type)
        for name, value in labels.items():
            pair = _str_field_len(name) + _str_field_len(value)
            fields += 1 + ((pair.bit_length() + 6) // 7 or 1) + pair
        _FIELDS_SIZE[key] = fields
    return fields


#: The labels' and content type's share of :func:`record_meta_size` by
#: ``(content type, *labels.items())``: a batch's records mostly share them.
_FIELDS_SIZE: dict = {}
