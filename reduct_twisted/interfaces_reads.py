# -*- test-case-name: tests.unit.test_interfaces -*-
"""
The storage engine's multi-entry queries (the I/O API, spec 1.20 §1.4,
§1.5) as the HTTP layer uses them, read-ahead included.  ``IStorageEngine``
extends it (``reduct_twisted.interfaces``).  Depends on zope.interface alone.
"""

from zope.interface import Interface

__all__ = ["IMultiQueries"]


class IMultiQueries(Interface):
    """
    Queries over several entries of a bucket, merged in (timestamp, entry
    name) order.  Synchronous, on the reactor thread; failures are
    ``ReductError`` subclasses.
    """

    def create_multi_query(bucket, entries=None, **options):
        """
        Create a query over the entries of ``bucket`` that ``entries`` selects
        (spec 1.20 §1.4; ``None``: all but ``$meta``), options as :meth:`create_query`.

        :return: the query id (from the same counter, in a table of its own).
        :raises NotFound: no such bucket.
        """

    def multi_next(bucket, qid, budget=2000, accept=None):
        """
        :param accept: ``accept(entry name) -> bool``; a refused record stays next.
        :return: ``(entry name, RecordView)`` in (timestamp, entry name)
            order; ``None``; ``PENDING``; ``HELD`` (``accept`` refused).
        :raises NotFound: no such bucket or multi-entry query.
        """

    def multi_take(bucket, qid, visit, reader=None, budget=2000, accept=None, visit_run=None):
        """:meth:`multi_next` a batch at a time (``storage/multi_parts.py``)."""

    def discard_multi_query(qid):
        """Drop multi-entry query ``qid`` now, if it is still there (a query link's lookup)."""

    def multi_options(bucket, qid):
        """
        :return: ``None`` if there is no such multi-entry query, else
            ``{"only_metadata": bool, "io": IoOverrides or None, "continuous": bool}``.
        """

    def remove_multi(bucket, entries=None, **query):
        """
        A REMOVE query over several entries (``$meta`` never touched): an
        object whose ``step()`` returns ``PENDING`` or the count removed.

        :raises NotFound: no such bucket.
        """

    def multi_read_ahead(bucket, qid, take):
        """
        Take the next batch of query ``qid`` now, for its next read
        (``storage/readahead.py``): ``take(reader)`` takes it through
        :meth:`multi_take` into ``reader`` (which opens no file) and returns
        what the read needs, or None (the query is left as it was).

        :return: whether a batch is kept for :meth:`multi_claim`.
        """

    def multi_claim(bucket, qid, use=True):
        """
        :return: ``(what take returned, ContentReader)`` of the batch kept
            for query ``qid``, if ``use`` and nothing it read has changed;
            else None, the query as before the read-ahead.
        """
