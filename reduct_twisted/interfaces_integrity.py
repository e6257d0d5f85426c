# -*- test-case-name: tests.unit.test_interfaces -*-
"""
The storage engine's integrity seam (issue #16): the record listing and the
per-entry log as the HTTP layer asks for them.  ``IStorageEngine`` extends
it (``reduct_twisted.interfaces``).  Depends on zope.interface alone.
"""

from zope.interface import Interface

__all__ = ["IEntryLogs", "ILeafWorker"]


class IEntryLogs(Interface):
    """
    Read access to each entry's record log.  Numbers are entry numbers
    (1-based); errors are ``ReductError`` subclasses: a missing bucket or
    entry, or a number beyond the log, is a 404, an impossible range a 422,
    a server without a log (``integrity`` not ``log``) answers 404, and an
    entry whose log this build cannot read (a newer format) a 409.
    """

    def log_head(bucket, entry):
        """:return: ``(tree_size, root_hash)`` of the entry's log (32-byte root)."""

    def log_inclusion(bucket, entry, number, tree_size):
        """:return: the audit path (RFC 9162 §2.1.3) of record ``number`` in the first ``tree_size`` leaves."""

    def log_consistency(bucket, entry, first, second):
        """:return: the consistency path (RFC 9162 §2.1.4) from ``first`` to ``second`` leaves."""

    def record_item(bucket, entry, number):
        """:return: ``(Leaf, stored)`` of record ``number``: as written, and whether the entry still holds it."""

    def list_page(bucket, entry, spec):
        """:return: a Deferred firing the ``listing_plan.Page`` ``spec`` (a ``ListingSpec``) asks for."""


class ILeafWorker(Interface):
    """
    A process that makes entry-log leaves and tree hashes off the reactor
    (``storage/leafjob.py`` is its protocol, ``leafworker.py`` runs it).
    """

    def submit(payload):
        """
        :param payload: a job (``leafjob.encode_job``).
        :return: a Deferred firing with the answer's payload, or failing
            if the worker is gone (the daemon then makes the leaves itself).
        """

    def stop():
        """End the worker: :return: a Deferred firing once it has exited."""
