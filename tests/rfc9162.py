"""
An independent RFC 9162 (Certificate Transparency 2.0) §2.1 reference, for tests.

Written from the RFC's text, step by step, and from RFC 8785 for the leaf
encoding of issue #16 (contract 4).  It imports nothing from
``reduct_twisted``: it is the yardstick the daemon's log and the
``reduct-twisted verify`` client are both measured against, so it must not
share their code.  Speed does not matter here; closeness to the RFC does.

§2.1.1  MTH({})      = HASH()
        MTH({d(0)})  = HASH(0x00 || d(0))
        MTH(D[n])    = HASH(0x01 || MTH(D[0:k]) || MTH(D[k:n])),
                       k the largest power of two smaller than n.
§2.1.3.1 PATH(m, D[n]) (inclusion path) and §2.1.4.1 PROOF(m, D[n])
        (consistency proof): the recursive definitions, used by test
        fixtures to serve proofs.
§2.1.3.2 and §2.1.4.2: the verification algorithms, numbered as in the RFC.
"""

import hashlib


def HASH(data: bytes) -> bytes:
    """SHA-256, the hash algorithm of the log (§2.1: ``HASH``)."""
    return hashlib.sha256(data).digest()


def leaf_hash(leaf: bytes) -> bytes:
    """``HASH(0x00 || d)`` (§2.1.1)."""
    return HASH(b"\x00" + leaf)


def node_hash(left: bytes, right: bytes) -> bytes:
    """``HASH(0x01 || left || right)`` (§2.1.1)."""
    return HASH(b"\x01" + left + right)


def largest_power_of_two_smaller_than(n: int) -> int:
    """``k`` of §2.1.1: the largest power of two strictly smaller than ``n`` (n > 1)."""
    assert n > 1
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def MTH(entries: list) -> bytes:
    """The Merkle Tree Hash of a list of leaf inputs (raw leaf bytes), by the definition."""
    n = len(entries)
    if n == 0:
        return HASH(b"")
    if n == 1:
        return leaf_hash(entries[0])
    k = largest_power_of_two_smaller_than(n)
    return node_hash(MTH(entries[:k]), MTH(entries[k:]))


def PATH(m: int, entries: list) -> list:
    """The inclusion path of entry ``m`` (0-based), §2.1.3.1, leaf side first."""
    n = len(entries)
    assert 0 <= m < n
    if n == 1:
        return []
    k = largest_power_of_two_smaller_than(n)
    if m < k:
        return PATH(m, entries[:k]) + [MTH(entries[k:])]
    return PATH(m - k, entries[k:]) + [MTH(entries[:k])]


def PROOF(m: int, entries: list) -> list:
    """The consistency proof from the first ``m`` entries to all of them, §2.1.4.1."""
    assert 0 < m <= len(entries)
    return _subproof(m, entries, True)


def _subproof(m: int, entries: list, b: bool) -> list:
    n = len(entries)
    if m == n:
        return [] if b else [MTH(entries)]
    k = largest_power_of_two_smaller_than(n)
    if m <= k:
        return _subproof(m, entries[:k], b) + [MTH(entries[k:])]
    return _subproof(m - k, entries[k:], False) + [MTH(entries[:k])]


def _lsb(x: int) -> bool:
    return x & 1 == 1


def verify_inclusion(hash_: bytes, leaf_index: int, tree_size: int, inclusion_path: list, root_hash: bytes) -> bool:
    """
    §2.1.3.2: does ``inclusion_path`` prove that the leaf hash ``hash_`` is
    entry ``leaf_index`` (0-based) of the tree of ``tree_size`` leaves whose
    head is ``root_hash``?
    """
    # 1. leaf_index >= tree_size: fail.
    if leaf_index >= tree_size or leaf_index < 0:
        return False
    # 2. fn = leaf_index, sn = tree_size - 1.
    fn = leaf_index
    sn = tree_size - 1
    # 3. r = hash.
    r = hash_
    # 4. for each p in inclusion_path:
    for p in inclusion_path:
        # a. sn == 0: fail.
        if sn == 0:
            return False
        # b. LSB(fn) set or fn == sn:
        if _lsb(fn) or fn == sn:
            # i. r = HASH(0x01 || p || r)
            r = node_hash(p, r)
            # ii. if LSB(fn) not set: shift both until LSB(fn) set or fn == 0.
            if not _lsb(fn):
                while not _lsb(fn) and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            # otherwise r = HASH(0x01 || r || p)
            r = node_hash(r, p)
        # c. shift both once.
        fn >>= 1
        sn >>= 1
    # 5. sn == 0 and r == root_hash.
    return sn == 0 and r == root_hash


def verify_consistency(first: int, second: int, first_hash: bytes, second_hash: bytes, consistency_path: list) -> bool:
    """
    §2.1.4.2: does ``consistency_path`` prove that the tree of ``second``
    leaves (head ``second_hash``) extends the tree of ``first`` leaves (head
    ``first_hash``)?  The RFC's algorithm is for ``0 < first < second``;
    ``first == second`` holds with an empty path and equal heads.
    """
    if first == second:
        return consistency_path == [] and first_hash == second_hash
    if not 0 < first < second:
        return False
    path = list(consistency_path)
    # 1. empty path: fail.
    if not path:
        return False
    # 2. first an exact power of 2: prepend first_hash.
    if first & (first - 1) == 0:
        path.insert(0, first_hash)
    # 3. fn = first - 1, sn = second - 1.
    fn = first - 1
    sn = second - 1
    # 4. while LSB(fn): shift both.
    if _lsb(fn):
        while _lsb(fn):
            fn >>= 1
            sn >>= 1
    # 5. fr = sr = first value of the path.
    fr = sr = path[0]
    # 6. for each subsequent value c:
    for c in path[1:]:
        # a. sn == 0: fail.
        if sn == 0:
            return False
        # b. LSB(fn) set or fn == sn:
        if _lsb(fn) or fn == sn:
            # i. fr = HASH(0x01 || c || fr); ii. sr = HASH(0x01 || c || sr)
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            # iii. if LSB(fn) not set: shift both until LSB(fn) set or fn == 0.
            if not _lsb(fn):
                while not _lsb(fn) and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            # otherwise sr = HASH(0x01 || sr || c)
            sr = node_hash(sr, c)
        # c. shift both once.
        fn >>= 1
        sn >>= 1
    # 7. fr == first_hash, sr == second_hash, sn == 0.
    return fr == first_hash and sr == second_hash and sn == 0


# -- RFC 8785 (JCS) for the leaf object: strings, integers, objects ----------------

_SHORT_ESCAPES = {0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r", 0x22: '\\"', 0x5C: "\\\\"}


def _jcs_string(s: str) -> str:
    # RFC 8785 §3.2.2.2: the ECMAScript JSON.stringify escaping.
    out = ['"']
    for ch in s:
        cp = ord(ch)
        if 0xD800 <= cp <= 0xDFFF:
            raise ValueError("lone surrogate in a string: not I-JSON (RFC 8785 §3.2.2.2)")
        if cp in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[cp])
        elif cp < 0x20:
            out.append(f"\\u{cp:04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _utf16_units(s: str) -> list:
    units = []
    for ch in s:
        cp = ord(ch)
        if cp >= 0x10000:
            cp -= 0x10000
            units += [0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF)]
        else:
            units.append(cp)
    return units


def _jcs(value) -> str:
    # §3.2.2.1: the literals as they are written in JSON.
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        # §3.2.2.3: ECMAScript Number serialisation; integers up to 2**53
        # print as their decimal digits.
        if abs(value) > 2**53:
            raise ValueError("integer beyond the IEEE 754 exact range")
        return str(value)
    if isinstance(value, str):
        return _jcs_string(value)
    if isinstance(value, dict):
        # §3.2.3: members sorted by the UTF-16 code units of their names.
        names = sorted(value, key=_utf16_units)
        return "{" + ",".join(_jcs_string(k) + ":" + _jcs(value[k]) for k in names) + "}"
    raise TypeError(f"not part of the leaf object: {type(value).__name__}")


def jcs(value) -> bytes:
    """The RFC 8785 canonical form (UTF-8) of a value made of strings, integers and objects."""
    return _jcs(value).encode("utf-8")


def leaf(number: int, timestamp: int, size: int, content_type: str, labels: dict, digest) -> bytes:
    """
    The leaf of record ``number`` (issue #16, contract 4); ``digest`` is 32
    raw bytes, or None for a record whose digest could not be computed
    (``"digest": null``).  A timestamp above 2**53 - 1, which an IEEE 754
    double cannot hold exactly, is written as its decimal string.
    """
    assert digest is None or len(digest) == 32
    return jcs(
        {
            "number": number,
            "timestamp": timestamp if timestamp <= 2**53 - 1 else str(timestamp),
            "size": size,
            "content_type": content_type,
            "labels": dict(labels),
            "digest": None if digest is None else "sha-256:" + digest.hex(),
        }
    )


def gap_leaf(number: int) -> bytes:
    """The leaf of a number no record holds (skipped after a failure)."""
    return jcs({"number": number, "skipped": True})
