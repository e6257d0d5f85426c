"""
What the read-ahead tests of both query kinds share (``test_readahead_multi``,
``test_readahead_query``): one read as the routes do it, the changes that void
a plan (or do not), and a spy on an engine's claims.
"""

import pytest

from reduct_twisted.http.batch_ahead import adopt
from reduct_twisted.storage import PENDING
from reduct_twisted.storage.testing import write_record


def read_once(claimed, make_reader, head_headers=lambda reader: []):
    """
    One batched read as ``batch_ahead`` serves it: the claimed batch, else one
    taken now by ``make_reader()``.  :return: ``(headers, body, last, claimed)``.
    """
    reader = adopt(claimed)
    if reader is None:
        reader = make_reader()
        while (result := reader.step()) is PENDING:
            pass
        assert result is reader
    content = reader._reader
    body = b""
    if content is not None:
        body = b"".join(data_file.read(offset, size)
                        for data_file, offset, size in content.ranges)
        content.close()
    return head_headers(reader) + list(reader.headers), body, reader.last, claimed is not None


def read_all(read, ahead=None) -> list:
    """
    ``read()`` (a :func:`read_once`) until a batch is the last, calling
    ``ahead()`` (a read-ahead) after each other one: the ``(headers, body,
    last)`` of every batch.
    """
    batches = []
    while True:
        headers, body, last, _ = read()
        batches.append((headers, body, last))
        if last:
            return batches
        if ahead is not None:
            ahead()


def changes(bucket, relabel, removed, rewritten, append):
    """
    ``(change, kept)`` cases: relabel record ``relabel``, remove the records
    ``removed``, remove and write again ``rewritten`` (each ``(entry, ts)``
    or ``(entry, [ts])``; all in the planned batch: the plan is voided),
    write ``append`` (``(entry, ts)``, in a block the batch did not read:
    the plan is kept).
    """

    def relabelled(engine):
        assert engine.update_labels(bucket, relabel[0], {relabel[1]: {"k": "new"}}) == {}

    def removal(engine):
        assert engine.remove_stamps(bucket, removed[0], removed[1]) == {}

    def rewrite(engine):
        assert engine.remove_stamps(bucket, rewritten[0], [rewritten[1]]) == {}
        write_record(engine, bucket, rewritten[0], rewritten[1], b"<again>")

    def appended(engine):
        write_record(engine, bucket, append[0], append[1], b"<late>")

    return [pytest.param(relabelled, False, id="relabel"), pytest.param(removal, False, id="remove"),
            pytest.param(rewrite, False, id="rewrite"), pytest.param(appended, True, id="append")]


def spy_claims(engine, name: str) -> list:
    """What ``engine.<name>`` (a claim) returns, call after call, from now on."""
    claims = []
    original = getattr(engine, name)
    setattr(engine, name, lambda *a, **k: claims.append(original(*a, **k)) or claims[-1])
    return claims
