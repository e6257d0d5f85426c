# -*- test-case-name: tests.integration.test_io_read,tests.integration.test_batch -*-
"""
Answering a batched read (``GET|HEAD /b/:b/:e/batch?q=``, ``GET|HEAD
/io/:b/read``) with read-ahead (``storage/readahead.py``): the batch read
ahead for it if the engine hands one out, else one taken now; after a GET
whose batch does not end the query, the next batch is read ahead at once,
while the client reads this one.
"""

from twisted.internet.defer import succeed

from reduct_twisted.errors import ReductError
from reduct_twisted.http.ratelimit import charge_egress
from reduct_twisted.stepping import drive

__all__ = ["adopt", "charge_batch", "serve_batch", "take_ahead"]


def adopt(claimed):
    """
    The reader of a batch an engine's ``*_claim`` handed out (``(reader,
    ContentReader)``), reading its contents through that ``ContentReader``;
    None if it handed out none.
    """
    if claimed is None:
        return None
    reader, content = claimed
    reader.attach(content)
    return reader


def serve_batch(api, request, reader, claimed: bool, no_body: bool, ahead=None):
    """
    Answer ``request`` with the batch of ``reader`` (a ``BatchReader``).

    :param claimed: whether its batch is taken already (a read-ahead);
        otherwise ``drive`` takes it now.
    :param no_body: a GET of an ``only_metadata`` query: the headers, no body.
    :param ahead: called (with no arguments) soon after a batch that does
        not end the query was sent, or None.
    :return: a Deferred firing with the body (``b""``) once it is sent.
    """
    d = succeed(reader) if claimed else drive(api.reactor, reader.step)
    d.addCallback(charge_batch, api, request)
    d.addBoth(reader.answer, request)
    if no_body:
        d.addCallback(_no_body, request)
    elif ahead is not None:
        d.addCallback(_then_read_ahead, api.reactor, reader, ahead)
    return d


def take_ahead(reader):
    """
    The ``take`` of a read-ahead: ``reader`` (over the engine's
    ``PlannedReader``) stepped once; :return: ``reader`` if that took a
    batch that does not end the query, else None (the read takes it).
    """
    try:
        result = reader.step()
    except ReductError:
        return None  # the read reports it
    if result is not reader or reader.last or not reader.headers:
        return None
    return reader


def charge_batch(reader, api, request):
    """Count a batch body about to be sent on ``RS_RATE_LIMIT_EGRESS``; :return: ``reader``."""
    if not reader.head:
        charge_egress(api, request, reader.size)
    return reader


def _then_read_ahead(body, reactor, reader, ahead):
    if not reader.last:
        reactor.callLater(0, ahead)
    return body


def _no_body(body, request):
    request.setHeader(b"content-length", b"0")
    return b""
