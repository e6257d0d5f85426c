# -*- test-case-name: tests.integration.test_integrity_log -*-
"""
The integrity surface (issue #16): the numbered record listing and the
per-entry RFC 9162 log.  Each handler takes the ``ReductAPI`` first; the
rows are in ``api.py``; the storage engine answers (``log_head``,
``log_inclusion``, ``log_consistency``, ``record_item``, ``list_page``) and
``api.log_key`` (``integrity.signing.LogKey``) signs the heads.

- ``GET /api/v1/records/:bucket/*entry``: a page of the entry's records
  as they were written (``{"data", "meta", "links"}``, ``Link`` header),
  or one record with ``?number=``.
- ``GET /api/v1/log/:bucket/*entry``: the signed tree head;
  ``?proof=<n>[&tree_size=<m>]``: the inclusion proof of record ``n``;
  ``?first=<a>&second=<b>``: a consistency proof.
- ``GET /api/v1/log-key``: the public key the heads are signed with.
"""

from __future__ import annotations

from typing import Optional

from reduct_twisted.errors import NotFound, UnprocessableEntity
from reduct_twisted.http.headers import query_arg, respond_json
from reduct_twisted.http.listing_params import parse_listing
from reduct_twisted.http.pagination import link_header, links, request_base
from reduct_twisted.wire import parse_u64

__all__ = ["log_key", "entry_log", "list_entry_records", "item_json"]


def item_json(leaf, stored: bool) -> dict:
    """
    A listed record: its leaf's fields as written (``"digest": null`` when it
    has none; the timestamp always an integer, though the leaf holds one
    above 2**53 - 1 as a string), and whether it is still stored.  A number
    no record holds (the gap leaf ``{"number": n, "skipped": true}``) is
    listed as ``{"number": n, "state": "skipped"}``.
    """
    if leaf.skipped:
        return {"number": leaf.number, "state": "skipped"}
    return {
        "number": leaf.number,
        "timestamp": leaf.timestamp,
        "size": leaf.size,
        "content_type": leaf.content_type,
        "labels": dict(leaf.labels),
        "digest": None if leaf.digest is None else "sha-256:" + leaf.digest.hex(),
        "state": "stored" if stored else "removed",
    }


def _positive(args, name: str) -> Optional[int]:
    text = query_arg(args, name)
    if text is None:
        return None
    value = parse_u64(text)
    if value is None or value < 1:
        raise UnprocessableEntity(f"'{name}' must be an unsigned integer of at least 1")
    return value


# -- the listing -----------------------------------------------------------------------


def list_entry_records(api, request, bucket, entry):
    spec = parse_listing(request.args)
    if spec.number is not None:
        leaf, stored = api.engine.record_item(bucket, entry, spec.number)
        return respond_json(request, item_json(leaf, stored))

    def answer(page):
        found = links(request_base(request, api.base_path), bucket, entry, spec,
                      next_start=page.next_start, previous_start=page.previous_start,
                      last_page=page.last_page, cursor=spec.start is not None)
        header = link_header(found)
        if header is not None:
            request.setHeader(b"link", header)
        return respond_json(request, {
            "data": [item_json(leaf, stored) for leaf, stored in page.items],
            "meta": {"total": page.total, "per_page": spec.per_page,
                     "current_page": page.current_page, "last_page": page.last_page},
            "links": found,
        })

    return api.engine.list_page(bucket, entry, spec).addCallback(answer)


# -- the log ---------------------------------------------------------------------------


#: The answer where the server keeps no log (``integrity`` is not ``log``).
NO_LOG = "Integrity log is off for this server"


def _key(api):
    if api.log_key is None:
        raise NotFound(NO_LOG)
    return api.log_key


def log_key(api, request):
    return respond_json(request, _key(api).describe())


def entry_log(api, request, bucket, entry):
    key = _key(api)
    args = request.args
    proof, tree_size = _positive(args, "proof"), _positive(args, "tree_size")
    first, second = _positive(args, "first"), _positive(args, "second")
    if proof is not None:
        if first is not None or second is not None:
            raise UnprocessableEntity("'proof' and 'first'/'second' exclude each other")
        if tree_size is None:
            tree_size = api.engine.log_head(bucket, entry)[0]
        path = api.engine.log_inclusion(bucket, entry, proof, tree_size)
        return respond_json(request, {"leaf_index": proof - 1, "tree_size": tree_size,
                                      "audit_path": [h.hex() for h in path]})
    if first is not None or second is not None:
        if first is None or second is None:
            raise UnprocessableEntity("A consistency proof needs both 'first' and 'second'")
        path = api.engine.log_consistency(bucket, entry, first, second)
        return respond_json(request, {"first": first, "second": second,
                                      "consistency_path": [h.hex() for h in path]})
    if tree_size is not None:
        raise UnprocessableEntity("'tree_size' goes with 'proof'")
    size, root = api.engine.log_head(bucket, entry)
    timestamp = int(api.reactor.seconds() * 1_000_000)
    return respond_json(request, key.sign_head(bucket, entry, size, root, timestamp))
