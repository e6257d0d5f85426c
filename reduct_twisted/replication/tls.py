# -*- test-case-name: tests.unit.test_replication_tls, tests.integration.test_replication_tls -*-
"""
TLS of ``https`` replication destinations (spec 1.20 §5.3, §9 [1.18.7]):
``RS_REPLICATION_VERIFY_SSL`` (default true) and ``RS_REPLICATION_CA_PATH``.

:func:`replication_tls` is the ``IPolicyForHTTPS`` the replication
manager's ``Agent`` connects with:

* verifying (the default): the destination's certificate chain must lead to
  a CA of the system's trust store, or of the PEM file
  ``RS_REPLICATION_CA_PATH`` when it is set, and name the destination's host
  (``optionsForClientTLS``, host name checked by ``service_identity``);
* ``RS_REPLICATION_VERIFY_SSL=false``: any certificate is accepted (the
  connection is still encrypted).

A trust root of the system's CAs and a file's is an ``IOpenSSLTrustRoot``
(``twisted.internet._sslverify``, private, pinned in
``tests/unit/test_twisted_pins.py``): ``optionsForClientTLS`` then checks
chain and host name as for any other root.

A destination that fails verification fails each request like an
unreachable one: the replication counts the errors in its diagnostics and
keeps its records to send later.
"""

from __future__ import annotations

from typing import Optional

from OpenSSL import SSL
from twisted.internet import ssl
from twisted.internet._sslverify import IOpenSSLTrustRoot  # pinned: test_twisted_pins
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.web.client import BrowserLikePolicyForHTTPS
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

__all__ = ["CaFileError", "replication_tls"]


class CaFileError(ValueError):
    """``RS_REPLICATION_CA_PATH`` is no readable PEM file of certificates."""


@implementer(IOpenSSLTrustRoot)
class SystemAndFile:
    """
    Trust the system's CAs and those of a PEM file.

    :param path: the PEM file; read when each connection is set up.
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def _addCACertsToContext(self, context) -> None:
        context.set_default_verify_paths()
        context.load_verify_locations(self.path.encode())


@implementer(IOpenSSLClientConnectionCreator)
class _Unverified:
    """A client connection that accepts any certificate, sending SNI all the same."""

    def __init__(self, hostname: str) -> None:
        self._hostname = hostname.encode("idna")
        self._context = ssl.CertificateOptions(verify=False).getContext()

    def clientConnectionForTLS(self, protocol):
        connection = SSL.Connection(self._context, None)
        connection.set_app_data(protocol)
        connection.set_tlsext_host_name(self._hostname)
        connection.set_connect_state()
        return connection


@implementer(IPolicyForHTTPS)
class ReplicationTLS:
    """
    The policy of :func:`replication_tls`.

    :param verify: check certificates and host names.
    :param ca_path: a PEM file of more CAs to trust, or None.
    """

    def __init__(self, verify: bool = True, ca_path: Optional[str] = None) -> None:
        self.verify = verify
        self.ca_path = ca_path
        self._trust = SystemAndFile(ca_path) if ca_path else None

    def creatorForNetloc(self, hostname: bytes, port: int):
        name = hostname.decode("ascii")
        if not self.verify:
            return _Unverified(name)
        if self._trust is None:
            return BrowserLikePolicyForHTTPS().creatorForNetloc(hostname, port)
        return ssl.optionsForClientTLS(name, trustRoot=self._trust)


def check_ca_file(path: str) -> None:
    """
    :raises CaFileError: ``path`` cannot be read as PEM certificates, with
        a one-line reason.
    """
    context = SSL.Context(SSL.TLS_METHOD)
    try:
        context.load_verify_locations(path.encode())
    except (SSL.Error, OSError) as exc:
        reason = getattr(exc, "strerror", None) or "no PEM certificate in it"
        raise CaFileError(f"RS_REPLICATION_CA_PATH={path!r} cannot be used: {reason}") from None


def replication_tls(config) -> ReplicationTLS:
    """
    The policy of ``config.replication_verify_ssl`` and
    ``config.replication_ca_path``.

    :raises CaFileError: the CA file cannot be used.
    """
    if config.replication_ca_path:
        check_ca_file(config.replication_ca_path)
    return ReplicationTLS(config.replication_verify_ssl, config.replication_ca_path)
