# -*- test-case-name: tests.unit.test_interfaces -*-
"""
The seams between the parts of the daemon, as zope.interface declarations.

Each interface says what one side may rely on from the other, written from
the caller's side; ``tests/unit/test_interfaces.py`` checks every
implementation (test fakes included) with ``verifyObject``.

* :class:`IAccessPolicy`: who may do what, as the HTTP routes ask it
  (``auth.OpenAccess``, ``auth.TokenAccess``).
* :class:`IStorageEngine`: the storage engine as ``http/`` and
  ``replication/`` use it (``storage.StorageEngine``).
* :class:`IEngineLifecycle`: the engine as ``StorageService`` drives it
  (``storage.StorageEngine``, the service tests' ``FakeEngine``).
* :class:`IEngineListener`: told of committed records and label updates
  (``replication.ReplicationManager``).
* :class:`IUploadSink`, :class:`IRecordSink`: where a streamed request body
  goes (``http/sinks.py``, ``http/batch.py``).
* :class:`ISystemEvents`: the ``$system`` bucket's event streams (spec 1.20
  §8) as the other parts feed and read them (``system.NullSystemEvents``
  when events are off).

Methods are declared without ``self`` (a declared ``self`` makes
``verifyObject`` fail).  This module imports nothing from the rest of
``reduct_twisted``, so anything may import it.
"""

from zope.interface import Attribute, Interface

# The $system events seam lives in its own module (this one is at its size
# limit); it depends on zope.interface alone, like this one.
from reduct_twisted.interfaces_events import ISystemEvents
from reduct_twisted.interfaces_integrity import IEntryLogs
from reduct_twisted.interfaces_reads import IMultiQueries

__all__ = [
    "IAccessPolicy",
    "IEngineLifecycle",
    "IEngineListener",
    "IRecordSink",
    "IStorageEngine",
    "ISystemEvents",
    "IEntryLogs",
    "IMultiQueries",
    "IUploadSink",
]


class IAccessPolicy(Interface):
    """
    Who may do what: the one place every route asks.  Nothing in it knows
    about HTTP; routes hand over the ``Authorization`` header value.
    """

    enabled = Attribute(
        "``True`` if callers are told apart by bearer tokens; ``False`` when "
        "authentication is disabled (every check passes)."
    )

    def check(authorization, policy, bucket=None, request=None):
        """
        Authenticate the caller (secret, expiry, IP allowlist: spec 1.20
        §4.3), then authorize what the operation needs.

        :param authorization: the ``Authorization`` header value (bytes), or
            ``None`` if the request had none.
        :param policy: an ``auth.Policy`` member.
        :param bucket: the bucket, for ``Policy.READ`` and ``Policy.WRITE``.
        :param request: the request, or None: gets ``reduct_token_name`` once
            the token is identified (before the other checks; issue #15
            contract 2); its client address is asked for an IP allowlist.
        :return: the caller's token object (a dict, shared: do not change
            it); :meth:`describe` gives what ``GET /me`` answers.
        :raises Unauthorized: no bearer token, an unknown, expired or
            address-restricted one.
        :raises Forbidden: the token lacks the permission.
        """

    def describe(token):
        """
        :param token: a token object returned by :meth:`check`.
        :return: its whole token object (spec 1.20 §4.1), computed now.
        """

    def may_read(token, bucket):
        """
        :param token: a token object returned by :meth:`check`.
        :return: whether that token may read ``bucket`` (``GET /list``
            shows only those).
        """

    def list_tokens():
        """:return: every token object, sorted by name, values hidden."""

    def create_token(name, body):
        """
        :param body: the decoded JSON body, ``None`` if it was empty.
        :return: ``{"value", "created_at"}`` of the new token; wait for
            :meth:`saved` before answering.
        :raises BadRequest: authentication is disabled.
        :raises UnprocessableEntity: bad name or permissions.
        :raises Conflict: the name is taken.
        """

    def get_token(name):
        """
        :return: the token object ``name``, its value hidden.
        :raises BadRequest: authentication is disabled.
        :raises NotFound: no such token.
        """

    def rotate_token(name):
        """
        Give token ``name`` a new secret; wait for :meth:`saved` before answering.

        :return: ``{"value", "created_at"}``.
        :raises BadRequest: authentication is disabled.
        :raises Conflict: the init token or a provisioned one.
        :raises NotFound: no such token.
        :raises UnprocessableEntity: it has passed its ``expires_at``.
        """

    def remove_token(name):
        """
        Remove token ``name``; wait for :meth:`saved` before answering.

        :raises NotFound: no such token.
        :raises Conflict: it is provisioned.
        """

    def link_key(name):
        """
        What a query link made with token ``name`` is bound to (issue #15
        contract 5): bytes that change when the token is rotated or
        re-created, else stable across restarts; never the secret itself.

        :return: those bytes, ``None`` for no such token; a constant when
            authentication is disabled.
        """

    def forget_bucket(bucket):
        """Bucket ``bucket`` was removed: drop it from every permission list."""

    def rename_bucket(old, new):
        """Bucket ``old`` is now ``new``: rename it in every permission list."""

    def saved():
        """
        :return: a Deferred firing once the last change is on disk, or
            failing with ``InsufficientStorage`` if writing it failed.
        """


class IEngineListener(Interface):
    """
    Told by the storage engine of every change other parts must follow
    (replication).  Called on the engine's thread right after the change;
    a listener must not raise and must not keep what it is handed.
    """

    def record_written(bucket, entry, record):
        """
        A record was committed (never called for aborted or refused ones).

        :param record: the engine's own ``Record``: read its ``ts``, size,
            content type and labels during the call, never change it.
        """

    def labels_updated(bucket, entry, ts, labels):
        """
        The labels of record ``ts`` were changed and the change is stored.

        :param labels: the update as applied: name to new value, ``""`` for
            a removed label.
        """


class IUploadSink(Interface):
    """
    Where a request body goes as it arrives: what ``StreamingRequest`` needs
    to hand chunks over and to give up when the client goes away.

    A sink may also have a ``refusal`` attribute: once it is not ``None``
    (after a ``write``), the request answers that error at once and drops
    the rest of the body; the sink has aborted itself already.  And a
    ``waiting`` attribute: while true, the sink has paused the body until
    its record gets a writer slot (``http/writers.py``), and the
    connection's body stall timeout does not run.
    """

    done = Attribute(
        "``True`` once the sink is finished or aborted; the request aborts a "
        "sink that is not done when the connection is lost."
    )

    def write(data):
        """
        Take the next chunk of the body (bytes or a memoryview).  Never
        raises for a bad body: the error is kept and reported when the
        sink is finished.
        """

    def abort():
        """
        The body ends short (the client went away, or the request was
        refused): drop what it would have stored.  Idempotent.
        """


class IRecordSink(IUploadSink):
    """
    A sink whose body becomes stored records (one record, or a batch): the
    route finishes it once the whole body has arrived.
    """

    def finish():
        """
        The whole body has arrived: store what is left.

        :return: a Deferred firing once stored (with ``None`` for a single
            record, with ``{ts: ReductError}`` of the refused records for a
            batch), or failing with a ``ReductError`` after the sink aborted
            what it held.  A sink already done fails it at once.
        """


class IEngineLifecycle(Interface):
    """
    The storage engine as ``StorageService`` drives it: opened and closed
    with the daemon, and two periodic upkeep steps.
    """

    def open():
        """
        Load the data directory (recovering from an unclean stop).

        :raises OSError: the data directory cannot be used.
        :raises DataDirRefused: it is not ours, or newer.
        """

    def recovery_report():
        """
        :return: what :meth:`open` found, to be logged: a dict with at least
            ``"unclean"`` (bool) and ``"problems"`` (list of messages).
        """

    def close():
        """Flush what was written and release the files; only the first call acts."""

    def enforce_quotas():
        """:return: how many blocks were removed to keep FIFO quotas."""

    def expire_queries():
        """:return: how many queries whose TTL lapsed were dropped."""


class IStorageEngine(IEntryLogs, IMultiQueries):
    """
    The storage engine as the HTTP layer and replication use it (with the
    record log's read access, ``IEntryLogs``, and the I/O API's queries,
    ``IMultiQueries``).  Every
    method is synchronous and runs on the reactor thread; failures are
    ``reduct_twisted.errors.ReductError`` subclasses, ready to be answered.
    """

    data_path = Attribute("The absolute path of the data directory.")
    clock = Attribute("Provides ``seconds()``: the time queries and batches are measured on.")
    listeners = Attribute(
        "A list of :class:`IEngineListener` providers; append to be told of changes."
    )
    is_open = Attribute("Whether the storage is loaded (``open`` done, ``close`` not yet).")

    # -- server and buckets -------------------------------------------------

    def info():
        """:return: the ``GET /info`` answer (a JSON-ready dict)."""

    def list_buckets():
        """:return: the info of every bucket (dicts with ``name``), sorted by name."""

    def has_bucket(name):
        """:return: whether bucket ``name`` exists."""

    def bucket_info(name):
        """
        :return: the ``GET /b/:bucket`` answer (settings, info, entries).
        :raises NotFound: no such bucket.
        """

    def create_bucket(name, settings):
        """
        :param settings: the decoded JSON settings, or ``None`` for defaults.
        :raises UnprocessableEntity: bad settings or name.
        :raises Conflict: the bucket exists.
        """

    def update_bucket(name, settings):
        """
        Change the given settings; missing or null fields keep their values.

        :raises UnprocessableEntity: bad settings.
        :raises NotFound: no such bucket.
        :raises Conflict: the bucket is provisioned.
        """

    def provision_bucket(name, settings):
        """
        Create bucket ``name`` or overwrite the given settings, then mark it
        provisioned (it can no longer be changed or removed through the API).

        :raises UnprocessableEntity: bad settings or name; nothing changes.
        """

    def remove_bucket(name):
        """
        :raises NotFound: no such bucket.
        :raises Conflict: the bucket is provisioned.
        """

    def rename_bucket(old, new):
        """
        :raises NotFound: no bucket ``old``.
        :raises Conflict: provisioned, ``new`` exists, or records are being written.
        :raises UnprocessableEntity: ``new`` is not a valid name.
        """

    # -- record writes ------------------------------------------------------

    def upload(bucket, entry, ts, length, content_type, labels, run_in_thread=None,
               digest=None, failed=None):
        """
        Reserve a new record and return the ``RecordWriter`` (``storage/upload.py``)
        its bytes go through: ``write``/``admit``/``write_chunks``, then
        ``commit`` (which tells the listeners) or ``abort``.

        :param length: the declared content length, ``None`` if chunked.
        :param run_in_thread: where a large record's disk work runs.
        :param digest: the SHA-256 the content must match, or ``None``.
        :param failed: batched writes: a small record joins the pending run
            (``storage/runs.py``), stored at the next :meth:`flush_writes`;
            ``failed(error)`` if that fails after ``commit`` returned.
        :raises NotFound: no such bucket.
        :raises UnprocessableEntity: bad entry name.
        :raises BadRequest: a HARD quota would be exceeded.
        :raises Conflict: a record with ``ts`` exists or is being written.
        """

    def upload_run(bucket, entry, specs, digests, failed):
        """``upload`` of consecutive small records of one entry at once (``storage/runalloc.py``)."""

    def flush_writes():
        """Store the pending small records of batched uploads now (see ``upload``); never raises."""

    # -- reads and queries ----------------------------------------------------

    def read(bucket, entry, ts):
        """
        :param ts: the timestamp, or ``None`` for the entry's latest record.
        :return: a ``RecordView`` of a finished record.
        :raises NotFound: no such bucket, entry or record.
        :raises TooEarly: the record is still being written.
        """

    def read_content(view):
        """:return: the whole content of a small record, as bytes."""

    def open_reader(views):
        """
        :return: a ``ContentReader`` (``storage/content.py``) over the data of
            the records ``views``: its ``ranges`` offer ``read(offset, length)``
            and ``send_to(socket, offset, count)``; ``close()`` when done.
        """

    def list_records(bucket, entry, start, stop):
        """:return: ``(ts, size)`` of the finished records in ``[start, stop)``."""

    def create_query(bucket, entry, *, start=None, stop=None, ttl=60, continuous=False,
                     include=None, exclude=None, limit=None, each_n=None, each_s=None,
                     when=None, strict=False, only_metadata=False, ext=None):
        """
        Create a query over an existing entry (spec §2.3.4, §3.10); the
        options are those of ``GET …/q`` and ``POST …/q`` (``when`` decoded).
        A ``$meta`` entry's query leaves out tombstones unless ``include``
        names ``remove`` (``storage.meta.effective_exclude``, spec 1.20 §3.1).

        :return: the query id.
        :raises NotFound: no such bucket or entry.
        :raises UnprocessableEntity: a bad option.
        """

    def query_next(bucket, entry, qid, budget=2000):
        """
        :return: the next ``RecordView``; ``None`` if nothing (more) matches
            now; ``PENDING`` if ``budget`` records were examined first (call
            again after yielding to the reactor).
        :raises NotFound: no such bucket, entry or query.
        """

    def query_take(bucket, entry, qid, visit, reader=None, budget=2000, visit_run=None):
        """:meth:`query_next` a batch at a time (``storage/reading.py``)."""

    def query_read_ahead(bucket, entry, qid, take):
        """:meth:`query_take`'s next batch taken now, as ``IMultiQueries.multi_read_ahead``."""

    def query_claim(bucket, entry, qid, use=True):
        """The batch :meth:`query_read_ahead` kept, as ``IMultiQueries.multi_claim``."""

    def query_options(bucket, entry, qid):
        """
        :return: ``None`` if there is no such query, else
            ``{"only_metadata": bool, "io": IoOverrides or None}``.
        """

    def end_continuous_queries():
        """From now on continuous queries end when no record is left (the daemon is stopping)."""

    # -- edits ----------------------------------------------------------------

    def update_labels(bucket, entry, changes):
        """
        :param changes: ``{ts: {name: value}}``; an empty value removes a label.
        :return: ``{ts: ReductError}`` of the records not updated.
        :raises NotFound: no such bucket or entry.
        """

    def remove_stamps(bucket, entry, stamps):
        """
        :return: ``{ts: ReductError}`` of the records not removed.
        :raises UnprocessableEntity: ``entry`` is a ``$meta`` entry (spec 1.20 §3.1).
        """

    def remove_records(bucket, entry, **query):
        """
        :return: a removal whose ``step()`` is called (yielding between
            calls) until it returns the count instead of ``PENDING``.
        :raises UnprocessableEntity: ``entry`` is a ``$meta`` entry (spec 1.20 §3.1).
        """

    def remove_entry(bucket, entry):
        """
        Remove ``entry`` and every entry below it (``entry/…``, spec 1.20 §2.4).

        :raises NotFound: no such bucket, and neither the entry nor one below it.
        :raises UnprocessableEntity: ``entry`` is a ``$meta`` entry (spec 1.20 §3.1).
        """

    def rename_entry(bucket, old, new):
        """
        Rename ``old`` and every entry below it; missing parents of ``new``
        are created (spec 1.20 §2.4, whose check order it follows).

        :raises UnprocessableEntity: ``new`` is not a valid entry name.
        :raises NotFound: no such bucket, nothing to rename.
        :raises Conflict: ``new`` is ``old`` or below it, ``new`` or a renamed
            name exists, or records are being written.
        """

    # -- durability -------------------------------------------------------------

    def take_dirty():
        """
        :return: ``(files, directories)``: sets of paths changed since the
            last call; flushing them makes every committed change durable.
        """

    # -- block compression (the lifecycle ``compress`` action) ----------------

    def entry_names(bucket):
        """:return: the bucket's entry names but ``$meta`` ones, sorted (``NotFound``)."""

    def compress_blocks(bucket, entry, stop, dry_run=False):
        """:return: Deferred ``(records, blocks)``; see ``storage/compress.py``."""
