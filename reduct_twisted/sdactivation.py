# -*- test-case-name: tests.unit.test_sdactivation -*-
"""
systemd socket activation (``sd_listen_fds(3)``): the listening sockets a
``.socket`` unit passes, as ``systemd:`` listen endpoints.

systemd passes ``LISTEN_FDS`` descriptors from 3 up, to the process
``LISTEN_PID`` names, with ``LISTEN_FDNAMES`` (``:``-separated, systemd 227
and later; another activator may leave it out).  Twisted's own ``systemd:``
endpoint forgets every descriptor when ``LISTEN_FDNAMES`` is missing, and
importing ``twisted.internet.endpoints`` (twistd does it before our code
runs) removes ``LISTEN_PID`` and ``LISTEN_FDS`` from ``os.environ``.  So
the variables are read here from ``os.environ`` when still there, else from
the environment the process started with (``/proc/self/environ``, which
unsetting a variable does not change), and without ``LISTEN_FDNAMES`` each
descriptor is named ``unknown``, as ``sd_listen_fds_with_names`` does.

Endpoint syntax (Twisted's, plus optional parts)::

    systemd:index=0                 the first passed socket
    systemd:name=web                the one named web (FileDescriptorName=)
    systemd:domain=INET:index=0     the same, the address family checked

``domain`` is optional: the socket's own family is used.  With no ``listen``
setting and sockets passed, the daemon listens on every passed socket
(``tap.listen_endpoints``).
"""

from __future__ import annotations

import os
import socket
from typing import Any, Callable, Mapping

import attrs
from twisted.internet.endpoints import AdoptedStreamServerEndpoint

__all__ = ["PREFIX", "ListenSockets", "systemd_endpoint"]

PREFIX = "systemd:"

#: The first descriptor systemd passes (SD_LISTEN_FDS_START).
FIRST_FD = 3

#: A passed descriptor's name when LISTEN_FDNAMES is missing.
UNNAMED = "unknown"


def _initial_environ() -> Mapping[str, str]:
    """The environment this process was started with, from ``/proc``."""
    try:
        with open("/proc/self/environ", "rb") as f:
            raw = f.read()
    except OSError:
        return {}
    pairs = (item.partition(b"=") for item in raw.split(b"\0") if item)
    return {k.decode("utf-8", "replace"): v.decode("utf-8", "replace") for k, _, v in pairs}


@attrs.frozen
class ListenSockets:
    """The descriptors passed by socket activation, and their names."""

    descriptors: tuple[int, ...] = ()
    names: tuple[str, ...] = ()

    @classmethod
    def from_environment(
        cls,
        environ: Mapping[str, str] | None = None,
        pid: int | None = None,
        initial: Callable[[], Mapping[str, str]] = _initial_environ,
    ) -> ListenSockets:
        """
        The sockets passed to process ``pid`` (ours by default) according
        to ``environ`` (``os.environ`` by default, falling back to
        ``initial()`` when it has no ``LISTEN_PID``).
        """
        if environ is None:
            environ = os.environ
            if "LISTEN_PID" not in environ:
                environ = {**initial(), **{k: v for k, v in environ.items()
                                            if k == "LISTEN_FDNAMES"}}
        pid = os.getpid() if pid is None else pid
        count = environ.get("LISTEN_FDS", "")
        if environ.get("LISTEN_PID") != str(pid) or not count.isdigit():
            return cls()
        descriptors = tuple(range(FIRST_FD, FIRST_FD + int(count)))
        given = environ.get("LISTEN_FDNAMES", "")
        names = tuple(given.split(":")) if given else ()
        if len(names) != len(descriptors):
            names = (UNNAMED,) * len(descriptors)
        return cls(descriptors, names)

    def default_endpoints(self) -> tuple[str, ...]:
        """One ``systemd:`` endpoint per passed socket, in order."""
        return tuple(f"{PREFIX}index={i}" for i in range(len(self.descriptors)))

    def descriptor(self, index: str | None, name: str | None) -> int:
        """The descriptor given by ``index`` or by ``name`` (exactly one)."""
        if (index is None) == (name is None):
            raise ValueError("give exactly one of index= or name=")
        if not self.descriptors:
            raise ValueError("no socket was passed (LISTEN_PID/LISTEN_FDS are not set for us)")
        if index is not None:
            if not index.isdigit() or int(index) >= len(self.descriptors):
                raise ValueError(
                    f"index={index}: {len(self.descriptors)} socket(s) were passed"
                )
            return self.descriptors[int(index)]
        matches = [fd for fd, n in zip(self.descriptors, self.names) if n == name]
        if len(matches) != 1:
            known = ", ".join(sorted(set(self.names)))
            raise ValueError(f"name={name}: {len(matches)} socket(s) have that name "
                             f"(passed: {known})")
        return matches[0]


def _arguments(description: str) -> dict[str, str]:
    """``systemd:a=1:b=2`` as ``{"a": "1", "b": "2"}``."""
    arguments: dict[str, str] = {}
    for part in description[len(PREFIX):].split(":"):
        key, equals, value = part.partition("=")
        if not equals or key not in ("domain", "index", "name") or key in arguments:
            raise ValueError(f"unexpected {part!r} (domain=, index= or name=)")
        arguments[key] = value
    return arguments


def systemd_endpoint(reactor: Any, description: str, sockets: ListenSockets) -> Any:
    """
    The endpoint adopting the passed socket ``description`` names.

    :raises ValueError: the description is malformed, names no passed
        socket, or the socket is not a stream socket of its ``domain``.
    """
    arguments = _arguments(description)
    fd = sockets.descriptor(arguments.get("index"), arguments.get("name"))
    # A duplicate, so the check leaves the passed descriptor alone.
    try:
        duplicate = os.dup(fd)
    except OSError as exc:
        raise ValueError(f"passed descriptor {fd} is not open: {exc.strerror}") from None
    try:
        with socket.socket(fileno=duplicate) as sock:
            family, kind = sock.family, sock.type
    except OSError as exc:
        os.close(duplicate)
        raise ValueError(f"passed descriptor {fd} is not a socket: {exc.strerror}") from None
    if kind != socket.SOCK_STREAM:
        raise ValueError(f"passed descriptor {fd} is not a stream socket")
    domain = arguments.get("domain")
    if domain is not None and getattr(socket, "AF_" + domain, None) != family:
        raise ValueError(f"passed descriptor {fd} is {family.name}, not AF_{domain}")
    return AdoptedStreamServerEndpoint(reactor, fd, family)
