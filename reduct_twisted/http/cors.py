# -*- test-case-name: tests.unit.test_cors, tests.integration.test_cors -*-
"""
CORS (spec §3.15), as upstream's outermost layer (tower-http ``CorsLayer``
with any method, any header, any exposed header) answers it:

* every ``OPTIONS`` request is a preflight, answered ``200`` with an empty
  body before routing and authentication: ``access-control-allow-methods:
  *``, ``access-control-allow-headers: *``, the ``vary`` below and, for an
  allowed origin, ``access-control-allow-origin``;
* every other response carries ``access-control-expose-headers: *``, the
  ``vary`` and, for an allowed origin, ``access-control-allow-origin``;
  a disallowed origin changes nothing else.

The allowed origin is echoed as the request sent it, or ``*`` if the list
contains ``*`` (then whatever the request's ``Origin``).  The ``vary``
header is on every response, as upstream's: the answer depends on those
request headers.

Everything that does not depend on the request is encoded once, when the
site is built, as header lines that ``ReductChannel.writeHeaders`` appends
to every response (:attr:`CorsPolicy.response_lines`; a preflight answer
swaps in :attr:`CorsPolicy.preflight_lines`).  Per request that costs
nothing but a list append, and, only when origins are listed, one look at
the ``Origin`` header (:meth:`CorsPolicy.echo`).
"""

from typing import Iterable, Optional

import attr

ALLOW_ORIGIN = b"access-control-allow-origin"
ANY = b"*"
VARY_LINE = b"vary: origin, access-control-request-method, access-control-request-headers\r\n"


def _lines(*headers) -> bytes:
    return b"".join(b"%s: %s\r\n" % header for header in headers)


@attr.s(frozen=True, slots=True)
class CorsPolicy:
    """
    Which origins may use the API, and the headers that say so.

    :ivar origins: the allowed origins as sent in ``Origin``; empty when
        none or any is allowed.
    :ivar any_origin: every origin is allowed (``*`` was listed).
    :ivar response_lines: the request-independent CORS header lines of
        every response but a preflight answer.
    :ivar preflight_lines: those of a preflight answer.
    """

    origins: frozenset = attr.ib(default=frozenset())
    any_origin: bool = attr.ib(default=False)
    response_lines: bytes = attr.ib(init=False)
    preflight_lines: bytes = attr.ib(init=False)

    @response_lines.default
    def _response_lines(self) -> bytes:
        return _lines((b"access-control-expose-headers", ANY)) + VARY_LINE + self._any()

    @preflight_lines.default
    def _preflight_lines(self) -> bytes:
        allow = _lines(
            (b"access-control-allow-methods", ANY), (b"access-control-allow-headers", ANY)
        )
        return allow + VARY_LINE + self._any()

    def _any(self) -> bytes:
        return _lines((ALLOW_ORIGIN, ANY)) if self.any_origin else b""

    @classmethod
    def from_origins(cls, origins: Iterable[str]) -> "CorsPolicy":
        """
        :param origins: ``Config.cors_allow_origin`` (already trimmed, no
            empty items).
        """
        origins = tuple(origins)
        if "*" in origins:
            return cls(any_origin=True)
        return cls(origins=frozenset(o.encode("ascii") for o in origins))

    def allowed(self, request) -> Optional[bytes]:
        """The ``access-control-allow-origin`` value for ``request``, or None."""
        if self.any_origin:
            return ANY
        if not self.origins:
            return None
        sent = request.requestHeaders.getRawHeaders(b"origin")
        if sent and sent[-1] in self.origins:
            return sent[-1]
        return None

    def echo(self, request) -> None:
        """
        Set ``access-control-allow-origin`` on ``request`` if its origin is a
        listed one (``*`` is in :attr:`response_lines` already).
        """
        if self.origins:
            origin = self.allowed(request)
            if origin is not None:
                request.setHeader(ALLOW_ORIGIN, origin)


#: Nothing allowed: the policy of a site built without a configuration.
NO_ORIGINS = CorsPolicy()
