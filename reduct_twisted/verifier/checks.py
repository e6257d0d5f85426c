"""
What is verified for one entry, in this order:

1. the signed tree head: its shape, that it names this bucket and entry,
   that it is signed by the server's log key (and that key is the one
   pinned or saved), and the Ed25519 signature over the RFC 8785 canonical
   JSON of the head without ``signature``;
2. its consistency with the head saved by the previous run (a consistency
   proof; fewer leaves or another root at the same size is a rewrite);
3. every listed record, page by page along ``Link: rel="next"``, in
   number order with removed ones: numbers 1..tree_size each exactly once;
   for a stored record its content (streamed and hashed while read) against
   the listed size and digest and the ``repr-digest`` header; for every
   record its leaf (contract 4) and its inclusion proof against the head.
   The leaf variants the server documents are rebuilt too: a skipped number
   (``{"number": n, "state": "skipped"}``, leaf ``{"number": n, "skipped":
   true}``) is proven and counted, a record with ``"digest": null`` is
   proven and reported as undigested (its content cannot be checked: a
   failure, or a warning with ``--allow-undigested``), a timestamp above
   2**53 - 1 is a decimal string in the leaf (fetched by its integer);
4. the listed leaves, hashed as a tree, give the head's root.
"""

import base64
import binascii
import hashlib
import re
import time

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from . import canonical, proofs
from .client import ClientError, Conflict, NotFound, entry_path, parse_links
from .report import EntryResult

_HEX32 = re.compile(r"[0-9a-f]{64}\Z")
_DIGEST = re.compile(r"sha-256:([0-9a-f]{64})\Z")


class KeyProblem(Exception):
    """The server's log key is unusable or not the one expected."""


class LogKey:
    """The server's Ed25519 log key (``GET /api/v1/log-key``)."""

    def __init__(self, body):
        if not isinstance(body, dict) or body.get("algorithm") != "ed25519":
            raise KeyProblem(f"the log key is not an ed25519 key: {str(body)[:200]}")
        try:
            self.raw = base64.b64decode(body.get("public_key", ""), validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise KeyProblem("the log key's public_key is not base64") from None
        if len(self.raw) != 32:
            raise KeyProblem(f"the log key has {len(self.raw)} bytes, an Ed25519 key has 32")
        self.key_id = hashlib.sha256(self.raw).hexdigest()
        if body.get("key_id") != self.key_id:
            raise KeyProblem(f"the log key's key_id {body.get('key_id')!r} is not the SHA-256 of its key")
        self.public_key = Ed25519PublicKey.from_public_bytes(self.raw)
        self.b64 = base64.b64encode(self.raw).decode()

    def verifies(self, signature: bytes, data: bytes) -> bool:
        try:
            self.public_key.verify(signature, data)
        except InvalidSignature:
            return False
        return True


def _hex32(value):
    return bytes.fromhex(value) if isinstance(value, str) and _HEX32.match(value) else None


def _is_uint(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


_DECIMAL = re.compile(r"(0|[1-9][0-9]{0,19})\Z")


def _timestamp(value):
    """A listed timestamp as an integer (a number, or its decimal string), or None."""
    if _is_uint(value):
        return value
    if isinstance(value, str) and _DECIMAL.match(value) and int(value) < 2**64:
        return int(value)
    return None


def parse_repr_digest(header):
    """The SHA-256 bytes of an RFC 9530 ``repr-digest`` header, or None."""
    for member in (header or "").split(","):
        name, _, value = member.strip().partition("=")
        value = value.strip()
        if name.strip().lower() == "sha-256" and len(value) > 2 and value[0] == value[-1] == ":":
            try:
                digest = base64.b64decode(value[1:-1], validate=True)
            except (binascii.Error, ValueError):
                return None
            return digest if len(digest) == 32 else None
    return None


class Options:
    def __init__(self, accept_new_key=False, allow_undigested=False, per_page=1000):
        self.accept_new_key = accept_new_key
        self.allow_undigested = allow_undigested
        self.per_page = per_page


class EntryCheck:
    """Verify one entry; :meth:`run` returns its :class:`EntryResult`."""

    def __init__(
        self, client, key: LogKey, state, progress, options: Options, bucket: str, entry: str, label=None, empty=False
    ):
        self.client = client
        self.empty = empty  # listed with no records: no log is no failure (unless a head was saved)
        self.label = label or f"{bucket}/{entry}"
        self.key = key
        self.state = state
        self.progress = progress
        self.options = options
        self.bucket = bucket
        self.entry = entry
        self.result = EntryResult(bucket, entry)
        self._log = f"api/v1/log/{entry_path(bucket)}/{entry_path(entry)}"
        self._records_path = f"api/v1/records/{entry_path(bucket)}/{entry_path(entry)}"

    def run(self) -> EntryResult:
        head = self._head()
        if head is not None:
            self.result.head = head
            self._consistency(head)
            self._records(head)
            if self.result.ok and (not self.result.undigested or self.options.allow_undigested):
                self.state.remember(self.bucket, self.entry, head, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        return self.result

    # -- 1. the signed head -----------------------------------------------------------

    def _head(self):
        fail = self.result.fail
        try:
            head, _ = self.client.get_json(self.client.target(self._log))
        except NotFound as exc:
            if self.empty and self.state.head(self.bucket, self.entry) is None:
                self.result.skipped = "no log, and the bucket lists it without records (a parent of nested entries?)"
                return None
            fail("head", f"the server has no log for this entry ({exc})")
            return None
        except Conflict as exc:
            fail("head", f"the server cannot read this entry's log ({exc})")
            return None
        if not isinstance(head, dict):
            fail("head", "the signed head is not a JSON object")
            return None
        problems = []
        if head.get("bucket") != self.bucket or head.get("entry") != self.entry:
            problems.append(f"it names {head.get('bucket')!r}/{head.get('entry')!r}")
        if not _is_uint(head.get("tree_size")):
            problems.append("tree_size is not a non-negative integer")
        if _hex32(head.get("root_hash")) is None:
            problems.append("root_hash is not 64 lowercase hex digits")
        if not _is_uint(head.get("timestamp")):
            problems.append("timestamp is not a non-negative integer")
        try:
            signature = base64.b64decode(head.get("signature") or "", validate=True)
        except (binascii.Error, TypeError, ValueError):
            signature = b""
        if len(signature) != 64:
            problems.append("signature is not the base64 of 64 bytes")
        if problems:
            fail("head", "malformed signed head: " + "; ".join(problems))
            return None
        if head.get("key_id") != self.key.key_id:
            fail("key", f"the head is signed by key {head.get('key_id')!r}, the server's log key is {self.key.key_id}")
            return None
        saved = self.state.head(self.bucket, self.entry)
        if saved and saved.get("key_id") != self.key.key_id:
            message = f"the log key changed since the saved head (was {saved.get('key_id')}, now {self.key.key_id})"
            if not self.options.accept_new_key:
                fail("key", message + "; rerun with --accept-new-key if the change is expected")
                return None
        unsigned = {k: v for k, v in head.items() if k != "signature"}
        try:
            message_bytes = canonical.canonical(unsigned)
        except canonical.NotCanonicalizable as exc:
            fail("signature", f"the head has no canonical form: {exc}")
            return None
        if not self.key.verifies(signature, message_bytes):
            fail("signature", "the Ed25519 signature of the signed head does not verify")
            return None
        return head

    # -- 2. consistency with the saved head -------------------------------------------------

    def _consistency(self, head) -> None:
        saved = self.state.head(self.bucket, self.entry)
        if not saved:
            self.result.consistency = "first run (head saved if all holds)"
            return
        fail = self.result.fail
        old_size, old_root = saved.get("tree_size"), _hex32(saved.get("root_hash"))
        new_size, new_root = head["tree_size"], bytes.fromhex(head["root_hash"])
        if not _is_uint(old_size) or old_root is None:
            fail("consistency", "the saved head in the state file is malformed")
            return
        if _is_uint(saved.get("timestamp")) and head["timestamp"] < saved["timestamp"]:
            fail("head", f"the head is older than the saved one ({head['timestamp']} < {saved['timestamp']})")
        if new_size < old_size:
            fail("consistency", f"the log shrank from {old_size} to {new_size} leaves: history was rewritten")
            self.result.consistency = "FAILED"
            return
        if old_size == 0:
            self.result.consistency = f"0 -> {new_size} (nothing to prove from an empty log)"
            return
        if new_size == old_size:
            if new_root != old_root:
                fail("consistency", f"same size {new_size} as the saved head but another root: history was rewritten")
                self.result.consistency = "FAILED"
                return
            self.result.consistency = f"{old_size} -> {new_size} (unchanged)"
            return
        query = {"first": old_size, "second": new_size}
        try:
            body, _ = self.client.get_json(self.client.target(self._log, query))
        except NotFound as exc:
            fail("consistency", f"no consistency proof from {old_size} to {new_size} ({exc})")
            self.result.consistency = "FAILED"
            return
        path = self._hashes(body, "consistency_path") if isinstance(body, dict) else None
        if path is None or body.get("first") != old_size or body.get("second") != new_size:
            fail("consistency", f"malformed consistency proof from {old_size} to {new_size}")
        elif not proofs.consistency_holds(old_size, new_size, old_root, new_root, path):
            fail("consistency", f"the head of {new_size} leaves does not extend the saved head of {old_size}: history was rewritten")
        else:
            self.result.consistency = f"{old_size} -> {new_size} proven"
            return
        self.result.consistency = "FAILED"

    @staticmethod
    def _hashes(body, name):
        values = body.get(name)
        if not isinstance(values, list):
            return None
        out = [_hex32(v) for v in values]
        return None if any(v is None for v in out) else out

    # -- 3. the records ------------------------------------------------------------------------

    def _records(self, head) -> None:
        size = head["tree_size"]
        self.root = bytes.fromhex(head["root_hash"])
        self.tree = proofs.StreamingRoot()
        self.tree_whole = True
        self.last = 0
        # start=1: the Registers cursor, so next links carry entry numbers (stable while the entry grows).
        query = {"start": 1, "include_removed": "true", "orderBy[number]": "asc", "per_page": self.options.per_page}
        target = self.client.target(self._records_path, query)
        seen = set()
        first = True
        self.progress.start(self.label, size)
        while target is not None:
            if target in seen:
                self.result.fail("listing", f"the next link loops back to {target}")
                break
            seen.add(target)
            body, headers = self.client.get_json(target)
            page = body.get("data") if isinstance(body, dict) else None
            if not isinstance(page, list):
                self.result.fail("listing", f"the listing page {target} has no data array")
                break
            if first:
                total = body.get("meta", {}).get("total") if isinstance(body.get("meta"), dict) else None
                if _is_uint(total):
                    self.progress.set_total(total)
                first = False
            for item in page:
                self._record(item, size)
            nxt = parse_links(headers.get("link", "")).get("next")
            target = self.client.same_origin(nxt) if nxt else None
        self.progress.finish()
        if self.last < size:
            self._missing(self.last + 1, size)
        if self.tree_whole and self.tree.size == size and self.tree.root() != self.root:
            self.result.fail(
                "tree",
                f"the {size} listed leaves hash to {self.tree.root().hex()}, the signed head says {head['root_hash']}",
            )

    def _missing(self, low, high) -> None:
        self.tree_whole = False
        which = f"number {low} is" if low == high else f"numbers {low}..{high} are"
        self.result.fail("listing", f"{which} in the log but not in the listing")

    def _record(self, item, size) -> None:
        result = self.result
        self.progress.advance(1)
        result.records += 1
        if isinstance(item, dict) and item.get("number") is None and item.get("digest") is None:
            # Stored before the server numbered and hashed records; its backfill has not reached it.
            self._undigested(_timestamp(item.get("timestamp")), None)
            return
        problem = self._malformed(item)
        if problem:
            number = item.get("number") if isinstance(item, dict) else None
            result.fail("listing", f"malformed listing item: {problem}", number if _is_uint(number) else None)
            self.tree_whole = False
            return
        if item["state"] != "skipped":
            item = dict(item, timestamp=_timestamp(item["timestamp"]))
        number, ts = item["number"], item.get("timestamp")
        if number <= self.last:
            result.fail("listing", f"listed out of order or twice (after #{self.last})", number, ts)
            return
        if number > self.last + 1 and self.last < size:
            self._missing(self.last + 1, min(number - 1, size))
        self.last = number
        if number > size:
            result.newer += 1
            return
        leaf_hash = proofs.hash_leaf(canonical.record_leaf(item))
        if self.tree_whole and self.tree.size == number - 1:
            self.tree.add(leaf_hash)
        else:
            self.tree_whole = False
        if item["state"] == "skipped":
            result.skipped_numbers += 1
        elif item["digest"] is None:
            self._undigested(ts, number)
        elif item["state"] == "stored":
            self._content(item)
        else:
            result.removed += 1
        self._inclusion(item, leaf_hash, size)

    def _undigested(self, ts, number) -> None:
        """
        A record the log holds without a digest (the server has not hashed it
        yet, or could not): its leaf and inclusion are checked, its content
        cannot be; a failure unless ``--allow-undigested`` makes it a warning.
        """
        self.result.undigested += 1
        if number is None:
            self.tree_whole = False
            what = "no number and no digest yet (the server has not hashed this record); not verified"
        else:
            what = "no digest in the log (the server has not hashed this record, or could not); content not verified"
        self.result.fail("digest", what, number, ts, warning=self.options.allow_undigested)

    @staticmethod
    def _malformed(item):
        if not isinstance(item, dict):
            return "not an object"
        if not _is_uint(item.get("number")):
            return "number is not a non-negative integer"
        if item["number"] < 1:
            return "number is below 1"
        if item.get("state") == "skipped":
            return None  # a number no record holds: {"number", "state"} is all there is
        if _timestamp(item.get("timestamp")) is None:
            return "timestamp is neither a non-negative integer nor its decimal string"
        if not _is_uint(item.get("size")):
            return "size is not a non-negative integer"
        if not isinstance(item.get("content_type"), str):
            return "content_type is not a string"
        labels = item.get("labels")
        if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
            return "labels is not an object of strings"
        if item.get("digest") is not None and not (isinstance(item["digest"], str) and _DIGEST.match(item["digest"])):
            return f"digest {item.get('digest')!r} is not sha-256:<64 lowercase hex>"
        if item.get("state") not in ("stored", "removed"):
            return f"state {item.get('state')!r} is neither stored, removed nor skipped"
        return None

    def _content(self, item) -> None:
        result = self.result
        number, ts = item["number"], item["timestamp"]
        target = self.client.target(
            f"api/v1/b/{entry_path(self.bucket)}/{entry_path(self.entry)}", {"ts": ts}
        )
        try:
            response = self.client.get(target)
        except NotFound as exc:
            if self._removed_since(number):
                # Removed (or evicted) after its page was listed: its leaf is still checked.
                result.removed += 1
                return
            result.fail("content", f"a stored record cannot be read ({exc})", number, ts)
            return
        hasher = hashlib.sha256()
        count = 0
        for chunk in response.read_chunks():
            hasher.update(chunk)
            count += len(chunk)
            self.progress.advance(0, len(chunk))
        result.bytes += count
        result.contents += 1
        listed = bytes.fromhex(_DIGEST.match(item["digest"]).group(1))
        actual = hasher.digest()
        if count != item["size"]:
            result.fail("content", f"the content has {count} bytes, the listing says {item['size']}", number, ts)
        if actual != listed:
            result.fail(
                "content",
                f"SHA-256 of the content is {actual.hex()}, the listing says {listed.hex()}",
                number,
                ts,
            )
        header = parse_repr_digest(response.headers.get("repr-digest"))
        if header is None:
            result.fail("repr-digest", "the record has no usable repr-digest: sha-256=:…: header", number, ts)
        elif header != listed:
            result.fail("repr-digest", f"repr-digest says {header.hex()}, the listing says {listed.hex()}", number, ts)

    def _removed_since(self, number) -> bool:
        """Does the listing now say record ``number`` is removed?"""
        target = self.client.target(self._records_path, {"number": number, "include_removed": "true"})
        try:
            item, _ = self.client.get_json(target)
        except NotFound:
            return False
        return isinstance(item, dict) and item.get("number") == number and item.get("state") == "removed"

    def _inclusion(self, item, leaf_hash, size) -> None:
        result = self.result
        number, ts = item["number"], item.get("timestamp")
        try:
            body, _ = self.client.get_json(self.client.target(self._log, {"proof": number, "tree_size": size}))
        except NotFound as exc:
            result.fail("inclusion", f"no inclusion proof ({exc})", number, ts)
            return
        path = self._hashes(body, "audit_path") if isinstance(body, dict) else None
        if path is None or body.get("leaf_index") != number - 1 or body.get("tree_size") != size:
            result.fail("inclusion", "malformed inclusion proof (leaf_index, tree_size or audit_path)", number, ts)
            return
        result.proofs += 1
        if not proofs.inclusion_holds(leaf_hash, number - 1, size, path, self.root):
            result.fail("inclusion", f"the record's leaf is not proven in the signed head of {size} leaves", number, ts)


def list_entries(client, bucket: str) -> tuple:
    """
    ``(names, empty)``: the bucket's entries (nested ones as paths ``a/b``),
    sorted, and those listed with ``record_count`` 0 (parents of nested
    entries, ``a`` beside ``a/b``, or entries never written), which may have
    no log at all.
    """
    try:
        body, _ = client.get_json(client.target(f"api/v1/b/{entry_path(bucket)}"))
    except NotFound:
        raise ClientError(f"no bucket {bucket!r} on the server") from None
    entries = body.get("entries") if isinstance(body, dict) else None
    if not isinstance(entries, list) or not all(isinstance(e, dict) and isinstance(e.get("name"), str) for e in entries):
        raise ClientError(f"the bucket {bucket!r} answer has no entries list")
    empty = {e["name"] for e in entries if e.get("record_count") == 0}
    return sorted(e["name"] for e in entries), empty
