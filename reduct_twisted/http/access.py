# -*- test-case-name: tests.unit.test_access_log,tests.integration.test_logs -*-
"""
The access log (issue #18): one INFO event per request, emitted once, when
its answer is finished (``ReductSite.log``, which ``Request.finish``
calls), when its connection is lost before that (``StreamingRequest``'s
``connectionLost``: an aborted upload, a cut download), or when the channel
refuses it (``ReductChannel``'s 400).

Its fields are event keys, so the JSON log format (``logs_format.py``)
keeps them apart; the text format renders :data:`ACCESS_FORMAT`::

    127.0.0.1 writer "POST /api/v1/b/cams/front?ts=1" 200 0B 1.250ms

* ``client``: the client address of ``clientip.client_ip`` (behind a
  trusted proxy, the one its forwarding headers name); ``-`` if none;
* ``token``: the name of the token the request's secret matched (also when
  the token was then refused: expired, not allowed from that address),
  ``-`` when none did (no token, an unknown one, authentication off).  A
  token's value and the ``Authorization`` header are never read here;
* ``method`` and ``path``: the request target, without the query parameters
  whose name may hold a secret (:func:`public_target`); non-printable
  characters are escaped, so a line is always one line;
* ``status``: the status sent; ``499`` when the client went away before any
  answer; ``bytes``: response body bytes sent; ``duration_ms``: from the
  request's headers (``StreamingRequest.gotLength``) to now;
* ``cut``: the connection was lost before the answer was complete (the text
  line ends with ``cut``).

One event per request (what ``Logger.emit`` makes), its line rendered once with
``str.format`` and handed over as ``log_text``, which the daemon's
observers print as it is (``logs_format.py``); the query string, if any,
is split once.
"""

from __future__ import annotations

import re
import time
from typing import Optional

from twisted.logger import Logger, LogLevel

from reduct_twisted.http.clientip import client_ip

__all__ = ["ACCESS_FORMAT", "AccessLog", "public_target", "STATUS_GONE"]

#: The namespace of access events (a filter can pick them out by it).
NAMESPACE = "reduct_twisted.access"

#: How the text format renders an access event.
ACCESS_FORMAT = '{client} {token} "{method} {path}" {status} {bytes}B {duration_ms:.3f}ms'
_CUT_FORMAT = ACCESS_FORMAT + " cut"

#: The status logged for a request whose client went away before any answer
#: (nginx's "client closed request").
STATUS_GONE = 499

#: A query parameter whose (lowercased, percent-decoded) name matches is
#: left out of the logged path: it may be a credential (``token=``,
#: ``access_token=``, ``api_key=``, a signature...).  ``s`` is the signature
#: of a query link (``links/codec.py``).
_SECRET_NAME = re.compile(r"token|secret|pass|key|auth|sig|jwt|cred|session|^s$")

_ANONYMOUS = "AUTHENTICATION-DISABLED"  # auth.policy.ANONYMOUS_NAME


def _printable(text: str) -> str:
    """``text`` with control characters, quotes and backslashes escaped."""
    if text.isprintable() and '"' not in text and "\\" not in text:
        return text
    escaped = text.encode("unicode_escape").decode("ascii")
    return escaped.replace('"', "%22")


def _secret_parameter(part: bytes) -> bool:
    name = part.partition(b"=")[0]
    if b"%" in name or b"+" in name:
        from urllib.parse import unquote_plus

        text = unquote_plus(name.decode("latin-1"), encoding="latin-1")
    else:
        text = name.decode("latin-1")
    return _SECRET_NAME.search(text.lower()) is not None


#: A query that matches nowhere holds no parameter :func:`public_target`
#: would leave out (every name :data:`_SECRET_NAME` matches contains one of
#: these, and an encoded name holds ``%`` or ``+``): kept whole, unsplit.
#: (Searched in the lowercased query.)
_MAYBE_SECRET = re.compile(rb"token|secret|pass|key|auth|sig|jwt|cred|session|(?:^|&)s(?:=|&|$)|%|\+")


def public_target(target: bytes) -> str:
    """
    The request target ``target`` (path and query, as sent) as the access
    log shows it: the query parameters whose name may hold a secret (see
    :data:`_SECRET_NAME`) left out entirely, non-printable characters
    escaped.
    """
    path, sep, query = target.partition(b"?")
    if sep and ((query[:3] == b"ts=" and query[3:].isdigit()) or (
            query and query[0] != 38 and query[-1] != 38 and b"&&" not in query  # no empty one
            and _MAYBE_SECRET.search(query.lower()) is None)):
        path = target  # the usual query (``ts=…``): nothing to leave out
    elif sep:
        kept = [p for p in query.split(b"&") if p and not _secret_parameter(p)]
        if kept:
            path = path + b"?" + b"&".join(kept)
    return _printable(path.decode("utf-8", "surrogateescape"))


class AccessLog:
    """
    Emits the access event of each request (see the module docstring).

    :param clock: gives ``seconds()``, the same clock as
        ``StreamingRequest.reduct_started``'s (the site's reactor).
    :param logger: where events go; a ``Logger`` in :data:`NAMESPACE` by
        default.
    """

    def __init__(self, clock, logger: Optional[Logger] = None) -> None:
        self._clock = clock
        self._log = logger if logger is not None else Logger(namespace=NAMESPACE)

    def finished(self, request, now: Optional[float] = None) -> None:
        """``request``'s answer is finished: log it (once)."""
        self._emit(request, request.code, False, now)

    def lost(self, request) -> None:
        """
        ``request``'s connection was lost before its answer was finished:
        log it with the status sent (and ``cut``), or :data:`STATUS_GONE`
        when nothing was; the body of an answer already written in full
        (a refusal before the request body) is not ``cut``.
        """
        if request.startedWriting:
            self._emit(request, request.code, not getattr(request, "_answered", False), None)
        else:
            self._emit(request, STATUS_GONE, True, None)

    def refused(self, request, code: int, size: int) -> None:
        """The channel answered ``request`` ``code`` with ``size`` body bytes, then closed."""
        self._emit(request, code, False, None, size)

    def _emit(self, request, code: int, cut: bool, now: Optional[float], size=None) -> None:
        if getattr(request, "reduct_logged", False):
            return
        request.reduct_logged = True
        if now is None:
            now = self._clock.seconds()
        started = getattr(request, "reduct_started", None)
        duration = (now - started) * 1000.0 if started is not None and now > started else 0.0
        if request.path is not None:
            method, target = request.method, request.uri
        else:  # the request line was parsed, the body not yet received
            channel = request.channel
            method = getattr(channel, "_command", None)
            target = getattr(channel, "_path", None)
        token = getattr(request, "reduct_token_name", None)
        if token is None or token == _ANONYMOUS:
            token = "-"
        client = client_ip(request) or "-"
        method = _printable(method.decode("latin-1")) if method else "-"
        path = public_target(target) if target else "-"
        sent = request.sentLength if size is None else size
        duration = round(duration, 3)
        # The line rendered once (what ``ACCESS_FORMAT`` renders, spelt out:
        # twice as fast as ``format_map``); our observers use it as it is
        # (logs_format.py), Twisted's formatter would take ~15 µs.  The
        # event is what ``Logger.emit`` makes, handed to its observer
        # directly (``emit`` checks the level against every level first).
        text = f'{client} {token} "{method} {path}" {code} {sent}B {duration:.3f}ms'
        log = self._log
        log.observer({
            "client": client, "token": token, "method": method, "path": path,
            "status": code, "bytes": sent, "duration_ms": duration, "cut": cut,
            "log_text": text + " cut" if cut else text, "log_logger": log,
            "log_level": LogLevel.info, "log_namespace": log.namespace,
            "log_source": log.source, "log_format": _CUT_FORMAT if cut else ACCESS_FORMAT,
            "log_time": time.time(),
        })
