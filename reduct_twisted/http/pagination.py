# -*- test-case-name: tests.unit.test_pagination -*-
"""
The links of a record listing page (issue #16): the ``links`` object
(``self``, ``first_page``, ``next_page``, ``previous_page``) and the
``Link`` header (RFC 8288: ``rel="next"``, ``rel="previous"``), as
absolute URLs below the API base path.

A link repeats every parameter of the listing that narrows or orders it
(``per_page``, ``start_ts``, ``stop_ts``, ``where[…]``, ``constraint[…]``,
``orderBy[…]``, ``include_removed``, ``digest``) in one canonical order,
and adds the position: ``start=<entry number>`` (the Registers cursor) or
``page=<n>`` (Streams' pages).
"""

from __future__ import annotations

from typing import Optional
from urllib.parse import quote, urlencode

from reduct_twisted.storage.listing import DEFAULT_PER_PAGE, ListingSpec

__all__ = ["request_base", "spec_params", "listing_url", "links", "link_header"]


def request_base(request, api_base_path: str) -> str:
    """
    The absolute URL of the API base for links handed back to this client:
    the scheme of the connection and the ``Host`` the client asked for (the
    listening address without one), then ``api_base_path`` (ends in ``/``).
    """
    scheme = "https" if request.isSecure() else "http"
    host = request.getHeader(b"host")
    if isinstance(host, bytes):
        host = host.decode("latin-1")
    if not host or any(c in host for c in "/?#@ \t\\"):
        address = request.getHost()
        host = f"{address.host}:{address.port}"
        if ":" in address.host:
            host = f"[{address.host}]:{address.port}"
    return f"{scheme}://{host}{api_base_path}"


def spec_params(spec: ListingSpec) -> list:
    """The listing's narrowing and ordering parameters, canonical order, as ``(name, value)``."""
    params = []
    if spec.per_page != DEFAULT_PER_PAGE:
        params.append(("per_page", str(spec.per_page)))
    if spec.start_ts is not None:
        params.append(("start_ts", str(spec.start_ts)))
    if spec.stop_ts is not None:
        params.append(("stop_ts", str(spec.stop_ts)))
    for condition in spec.where:
        params.append((f"where[{condition.label}]", condition.value))
        if condition.operator != "=":
            params.append((f"constraint[{condition.label}]", condition.operator))
    if spec.order_by != "number" or spec.descending:
        params.append((f"orderBy[{spec.order_by}]", "desc" if spec.descending else "asc"))
    if spec.include_removed:
        params.append(("include_removed", "true"))
    if spec.digest is not None:
        params.append(("digest", "sha-256:" + spec.digest.hex()))
    return params


def listing_url(base: str, bucket: str, entry: str, params: list) -> str:
    """``{base}api/v1/records/<bucket>/<entry>?<params>`` with every segment escaped."""
    path = "/".join(quote(part, safe="") for part in entry.split("/"))
    url = f"{base}api/v1/records/{quote(bucket, safe='')}/{path}"
    return f"{url}?{urlencode(params, quote_via=quote)}" if params else url


def links(base: str, bucket: str, entry: str, spec: ListingSpec, *,
          next_start: Optional[int] = None, previous_start: Optional[int] = None,
          last_page: int = 1, cursor: bool) -> dict:
    """
    :param cursor: whether the page was asked by ``start`` (links carry
        ``start``: ``next_start``/``previous_start`` are the first entry
        numbers of the neighbouring pages, None at an end) or by ``page``
        (links carry ``page``; ``last_page`` bounds ``next``).
    :return: ``{"self", "first_page", "next_page", "previous_page"}``.
    """
    params = spec_params(spec)

    def url(position: Optional[tuple]) -> Optional[str]:
        if position is None:
            return None
        return listing_url(base, bucket, entry, params + [position])

    if cursor:
        here = ("start", str(spec.start))
        after = None if next_start is None else ("start", str(next_start))
        before = None if previous_start is None else ("start", str(previous_start))
    else:
        here = ("page", str(spec.page))
        after = ("page", str(spec.page + 1)) if spec.page < last_page else None
        before = ("page", str(min(spec.page - 1, last_page))) if spec.page > 1 else None
    return {"self": url(here), "first_page": url(("page", "1")),
            "next_page": url(after), "previous_page": url(before)}


def link_header(found: dict) -> Optional[bytes]:
    """The ``Link`` header value of ``links()``'s next and previous, or None if neither."""
    parts = [f'<{found[key]}>; rel="{rel}"'
             for key, rel in (("next_page", "next"), ("previous_page", "previous"))
             if found.get(key)]
    return ", ".join(parts).encode("ascii") if parts else None
