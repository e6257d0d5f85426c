# -*- test-case-name: tests.unit.test_ratelimit, tests.integration.test_limits -*-
"""
Rate limits (spec 1.20 §5.10, §9): ``RS_RATE_LIMIT_API``, ``_INGRESS`` and
``_EGRESS``, fixed windows counted per client address (``clientip.py``;
``global`` when the request has none).

* API: one unit per request, whatever its path (``/alive`` and ``/ready``
  included), counted in ``StreamingRequest.gotLength`` before anything
  else is decided; a CORS preflight (``OPTIONS``) is not counted.
* Ingress: the announced length (``Content-Length``, else
  ``x-reduct-content-length``) of a single write, a v1 batched write or an
  I/O API (v2) write, counted once the write's permission is checked and
  before its body is read (``fastpath.py``).  A chunked body announcing no
  length counts nothing.
* Egress: the content of a single record read (GET), the body of a batched
  read (GET, v1 and v2) once its records are chosen, and the bytes of a
  link download: the links code calls :func:`charge_egress`.

A window starts with the first unit counted for a client and lasts the
limit's whole number of seconds; a request that would take the count past
the limit is refused, counting nothing, with 429 and the text of
:meth:`Window.refusal` (no ``Retry-After`` header; ``server`` and
``x-reduct-api`` as on every answer).  Counters of windows that are over
are dropped at most once a window, so the table holds the clients of the
last window or two.
"""

from __future__ import annotations

import math
from typing import Optional

from reduct_twisted.errors import ReductError
from reduct_twisted.http.clientip import client_ip
from reduct_twisted.http.headers import announced_length

__all__ = ["RateLimits", "Window", "charge_egress", "charge_ingress", "human_size"]

_PREFIXES = "KMGTPE"


def human_size(amount: int) -> str:
    """
    A byte count as upstream prints it in the 429 text (its ``bytesize``
    1.x: decimal units, one decimal): ``512 B``, ``10.0 MB``.
    """
    if amount < 1000:
        return f"{amount} B"
    exp = max(1, int(math.log(amount) / math.log(1000)))
    return f"{amount / 1000 ** exp:.1f} {_PREFIXES[exp - 1]}B"


class Window:
    """
    The fixed-window counters of one limit.

    :param kind: ``api requests``, ``ingress bytes`` or ``egress bytes``.
    :param limit: a ``config_limits.RateLimit``.
    :param in_bytes: amounts print as ``<human size> (<bytes>)``.
    """

    def __init__(self, kind: str, limit, in_bytes: bool) -> None:
        self.kind = kind
        self.amount = limit.amount
        self.seconds = max(1, int(limit.window))
        self.in_bytes = in_bytes
        #: scope -> [window start (whole seconds), units used]
        self.counters: dict = {}
        self._pruned_at = 0

    def consume(self, scope: str, units: int, now: float) -> Optional[ReductError]:
        """
        Count ``units`` for ``scope`` at time ``now``.

        :return: None, or the 429 to answer (nothing was counted).
        """
        second = int(now)
        if second - self._pruned_at >= self.seconds:
            self._prune(second)
        counter = self.counters.get(scope)
        if counter is None or second - counter[0] >= self.seconds:
            counter = self.counters[scope] = [second, 0]
        used = counter[1] + units
        if used > self.amount:
            retry = max(1, self.seconds - (second - counter[0]))
            return ReductError(self.refusal(scope, used, retry), 429)
        counter[1] = used
        return None

    def _prune(self, second: int) -> None:
        self._pruned_at = second
        over = [s for s, (start, _) in self.counters.items() if second - start >= self.seconds]
        for scope in over:
            del self.counters[scope]

    def _amount(self, value: int) -> str:
        return f"{human_size(value)} ({value})" if self.in_bytes else str(value)

    def refusal(self, scope: str, used: int, retry: int) -> str:
        """The 429 text of spec 1.20 §5.10."""
        return (
            f"rate limit for {self.kind} ({scope}) exceeded: used={self._amount(used)} "
            f"limit={self._amount(self.amount)} retry_after={retry}s"
        )


def _scope(request) -> str:
    ip = client_ip(request)
    ip = ip.strip() if ip else ""
    return f"client {ip}" if ip else "global"


class RateLimits:
    """
    The daemon's three limits (each may be absent).

    :param api: ``RS_RATE_LIMIT_API`` (a ``RateLimit``) or None.
    :param ingress: ``RS_RATE_LIMIT_INGRESS`` or None.
    :param egress: ``RS_RATE_LIMIT_EGRESS`` or None.
    :param clock: provides ``seconds()`` (the reactor; ``task.Clock`` in tests).
    """

    def __init__(self, api, ingress, egress, clock) -> None:
        self.api = Window("api requests", api, False) if api is not None else None
        self.ingress = Window("ingress bytes", ingress, True) if ingress is not None else None
        self.egress = Window("egress bytes", egress, True) if egress is not None else None
        self.clock = clock

    @classmethod
    def from_config(cls, config, clock) -> Optional["RateLimits"]:
        """The daemon's limits, or None when no ``rate_limit_*`` is set."""
        limits = (config.rate_limit_api, config.rate_limit_ingress, config.rate_limit_egress)
        if all(limit is None for limit in limits):
            return None
        return cls(*limits, clock)

    def _charge(self, window: Optional[Window], request, units: int) -> None:
        if window is None:
            return
        refusal = window.consume(_scope(request), units, self.clock.seconds())
        if refusal is not None:
            raise refusal

    def request(self, request) -> Optional[ReductError]:
        """Count one API request; :return: its 429, or None."""
        if self.api is None:
            return None
        return self.api.consume(_scope(request), 1, self.clock.seconds())

    def charge_ingress(self, request, nbytes: int) -> None:
        """:raises ReductError: 429 when ``nbytes`` more written bytes are too many."""
        self._charge(self.ingress, request, nbytes)

    def charge_egress(self, request, nbytes: int) -> None:
        """:raises ReductError: 429 when ``nbytes`` more read bytes are too many."""
        self._charge(self.egress, request, nbytes)


def charge_ingress(api, request, length: Optional[int]) -> None:
    """
    Count the announced length of a write on ``api``'s limits (no-op
    without ``RS_RATE_LIMIT_INGRESS``).

    :param length: the body length twisted.web announced (None: chunked).
    :raises ReductError: 429.
    """
    limits = api.rate_limits
    if limits is None or limits.ingress is None:
        return
    try:
        announced = announced_length(request, length) or 0
    except ReductError:
        announced = 0  # the write refuses its headers itself
    limits.charge_ingress(request, announced)


def charge_egress(api, request, nbytes: int) -> None:
    """
    Count ``nbytes`` of content about to be sent to ``request``'s client on
    ``api``'s limits (no-op without ``RS_RATE_LIMIT_EGRESS``).  The one
    entry point for every read path, link downloads included: call it
    before the response's headers are set.

    :raises ReductError: 429; nothing counted.
    """
    limits = api.rate_limits
    if limits is not None and nbytes:
        limits.charge_egress(request, nbytes)
