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
    systemd:index=0:privateKey=key.pem:certKey=cert.pem    HTTPS on it

``domain`` is optional: the socket's own family is used.  ``privateKey`` and
``certKey`` (PEM files; a ``:`` in them escaped by a backslash, as in ``ssl:``)
serve TLS on the passed socket.  With no ``listen`` setting and sockets
passed, the daemon listens on every passed socket, with TLS when
``cert_path`` and ``cert_key_path`` are set (``tap.listen_endpoints``).
"""

from __future__ import annotations

import os
import socket
from typing import Any, Callable, Mapping

import attrs
from twisted.internet.endpoints import AdoptedStreamServerEndpoint
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.internet.ssl import CertificateOptions, PrivateCertificate
from twisted.protocols.tls import TLSMemoryBIOFactory
from zope.interface import implementer

__all__ = ["PREFIX", "ListenSockets", "TLSServerEndpoint", "is_tls", "systemd_endpoint"]

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

    def default_endpoints(self, key: str | None = None, cert: str | None = None
                          ) -> tuple[str, ...]:
        """One ``systemd:`` endpoint per passed socket, in order; with TLS
        when the ``key`` and ``cert`` files are given."""
        tls = f":privateKey={_quote(key)}:certKey={_quote(cert)}" if key and cert else ""
        return tuple(f"{PREFIX}index={i}{tls}" for i in range(len(self.descriptors)))

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


_KEYS = ("domain", "index", "name", "privateKey", "certKey")


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


def _split(text: str) -> list[str]:
    """``text`` cut at each ``:`` not escaped by a backslash, unescaped."""
    parts, current, chars = [], [], iter(text)
    for char in chars:
        if char == "\\":
            current.append(next(chars, ""))
        elif char == ":":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _arguments(description: str) -> dict[str, str]:
    """``systemd:a=1:b=2`` as ``{"a": "1", "b": "2"}``."""
    arguments: dict[str, str] = {}
    for part in _split(description[len(PREFIX):]):
        key, equals, value = part.partition("=")
        if not equals or key not in _KEYS or key in arguments:
            raise ValueError(f"unexpected {part!r} ({'=, '.join(_KEYS)}=)")
        arguments[key] = value
    if ("privateKey" in arguments) != ("certKey" in arguments):
        raise ValueError("give both privateKey= and certKey=, or neither")
    return arguments


def is_tls(description: str) -> bool:
    """Whether the ``systemd:`` endpoint ``description`` serves TLS."""
    try:
        return "certKey" in _arguments(description)
    except ValueError:
        return False


@implementer(IStreamServerEndpoint)
@attrs.frozen
class TLSServerEndpoint:
    """``endpoint`` serving TLS with ``options`` (a pyOpenSSL context factory)."""

    endpoint: Any
    options: Any

    def listen(self, factory: Any) -> Any:
        return self.endpoint.listen(TLSMemoryBIOFactory(self.options, False, factory))


def _tls_options(key_path: str, cert_path: str) -> CertificateOptions:
    # As Twisted's ssl: endpoint loads them: the certificate and its key.
    try:
        with open(cert_path, "rb") as f:
            cert = f.read()
        with open(key_path, "rb") as f:
            key = f.read()
        certificate = PrivateCertificate.loadPEM(cert + b"\n" + key)
    except Exception as exc:
        raise ValueError(f"cannot load certKey={cert_path} privateKey={key_path}: {exc}"
                         ) from None
    return CertificateOptions(privateKey=certificate.privateKey.original.to_cryptography_key(),
                              certificate=certificate.original.to_cryptography())


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
    endpoint = AdoptedStreamServerEndpoint(reactor, fd, family)
    if "certKey" in arguments:
        return TLSServerEndpoint(endpoint, _tls_options(arguments["privateKey"],
                                                        arguments["certKey"]))
    return endpoint
