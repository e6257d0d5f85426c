# -*- test-case-name: tests.unit.test_runalloc -*-
"""
A run of small records of one entry allocated at once (issue #17: work per
batch, not per record).

A batched write announces all its records in its headers, so the records
of a run (consecutive small records of one entry: ``runs.py`` writes them)
can be allocated together when the first one's bytes begin.
:func:`allocate_run` makes, for each, exactly the allocation
``writer.allocate`` would make in the same order, or the error it would
raise, with the checks that do not depend on the record done once for
the run:

* the entry's name, the engine-wide storage cap and the bucket's quota
  (the whole run fits with room to spare: no record would evict or be
  refused), the space reserve and the free space: once for the run; if
  any of them refuses, every record goes through ``writer.allocate`` on its
  own (the first ones may fit where the run does not, a FIFO quota evicts
  as it goes, each refusal is its own record's);
* the records that follow the entry's last block (timestamps ascending,
  above its latest) and fit it (``max_block_records``, ``max_block_size``)
  are added to its table in one pass (:func:`reserve_in_last`, the same
  ``Record`` objects, counts and sizes as ``Block.reserve`` one by one);
  any other record (a new block, a belated timestamp, a duplicate) goes
  through ``writer.allocate`` alone, and the run goes on after it.
"""

from reduct_twisted.errors import ReductError
from reduct_twisted.storage import writer
from reduct_twisted.storage.tablesize import RECORD_OVERHEAD, labels_bytes, share
from reduct_twisted.storage.disk.blockfile import meta_fields_size, meta_fixed_size
from reduct_twisted.storage.records import STARTED, Record
from reduct_twisted.storage.settings import check_entry_name, is_meta_entry

__all__ = ["allocate_run", "reserve_in_last"]


def reserve_in_last(series, specs, first: int, settings) -> list:
    """
    Reserve ``specs[first:]`` (``(ts, length, content_type, labels)``, small
    records) in ``series``' last block, as far as they follow it and fit.

    :return: the records reserved (STARTED, in the shared segment), for a
        prefix of ``specs[first:]``: maybe none.
    """
    blocks = series.blocks
    if not blocks:
        return []
    block = blocks[-1]
    if not block.record_count or block.removed:
        return []
    room = min(settings.max_block_records - block.record_count, len(specs) - first)
    space = settings.max_block_size - block.data_size
    latest, end = block.latest_ts, first
    while end - first < room:
        ts, length = specs[end][0], specs[end][1]
        if ts <= latest or length > space:
            break
        latest, space, end = ts, space - length, end + 1
    if end == first:
        return []
    series.context.tables.append(block)  # all after its last: its table is not read
    table, order = block.table, block.order
    segment, offset = block.shared_segment, block.tail
    records, table_bytes, meta = [], 0, 0
    texts = fields = own = None  # (content type, labels) of the record before and their share
    sharing, users = block.sharing, 0
    for ts, length, content_type, labels in specs[first:end]:
        # A run of alike records shares one label dict, counted once
        # (tablesize.py); blockfile.record_meta_size's share of the content
        # type and labels is computed once for it too.
        if texts is None or content_type != texts[0] or labels != texts[1]:
            if users > 1:
                sharing = share(sharing, own, users)
            texts, fields, own, users = (content_type, labels), meta_fields_size(
                content_type, labels), dict(labels), 0
            table_bytes += labels_bytes(own)
        users += 1
        record = Record(ts, segment, offset, length, content_type, own, STARTED)
        table[ts] = record
        order.append(ts)  # above every timestamp of the block: still sorted
        table_bytes += RECORD_OVERHEAD + len(content_type)
        meta += meta_fixed_size(ts, offset, offset + length) + fields
        offset += length
        records.append(record)
    if users > 1:
        sharing = share(sharing, own, users)
    block.sharing = sharing
    count, data = len(records), offset - block.tail
    # Block.reserve's summary changes (Block._count of a STARTED shared record), summed.
    block.version += 1
    block.table_bytes += table_bytes
    block.record_count += count
    block.started += count
    block.data_size += data
    block.meta_size += meta
    block.shared_live += data
    block.tail = offset
    block.latest_ts = latest
    series.size += data + meta
    series.record_count += count
    series.context.tables.resized(block)
    return records


def _stored_bound(spec) -> int:
    """
    At least what a record adds to the ``size`` statistics: its length and
    its metadata (``blockfile.record_meta_size``: fixed fields under 64
    bytes, strings at most 3 bytes a character, under 12 bytes of framing
    a label).
    """
    ts, length, content_type, labels = spec
    return (length + 64 + 3 * (len(content_type) + sum(map(len, labels)) + sum(map(len, labels.values())))
            + 12 * len(labels))


def _checked_once(context, owner, entry: str, specs: list) -> bool:
    """
    The checks of ``writer.allocate`` that do not depend on the record, for
    the whole run; :return: False if one refuses or might (the records
    then go one by one and get their own answers: the first ones may fit
    where the run does not, a FIFO quota evicts as it goes).
    """
    if is_meta_entry(entry):
        return False
    try:
        if entry not in owner.entries:
            check_entry_name(entry)
    except ReductError:
        return False
    settings, usage = owner.settings, context.usage
    if settings.quota_type != "NONE" or usage.cap:
        # Each record's Bucket.check_quota and Usage.check pass without
        # evicting anything when the run fits with room to spare.
        bound = sum(map(_stored_bound, specs))
        if usage.cap and usage.stored + usage.pending + bound > usage.cap:
            return False
        if settings.quota_type == "HARD" and owner.size + owner.in_flight + bound > settings.quota_size:
            return False
        if settings.quota_type == "FIFO" and owner.size + bound > settings.quota_size:
            return False
    if not context.reserve.ensure():
        return False
    return context.space is None or context.space.room_for(sum(spec[1] for spec in specs))


def allocate_run(context, owner, entry: str, specs: list) -> list:
    """
    Allocate small records ``specs`` (``(ts, length, content_type, labels)``,
    known lengths up to ``SMALL_RECORD_MAX``) of ``entry`` in bucket
    ``owner``, in order, for the pending run (``acquire=False``).

    :return: for each spec, its ``Allocation`` or the ``ReductError`` that
        ``writer.allocate`` raised for it.
    """
    fast = _checked_once(context, owner, entry, specs)
    out: list = []
    i = 0
    while i < len(specs):
        series = owner.entries.get(entry) if fast else None
        records = [] if series is None else reserve_in_last(
            series, specs, i, owner.settings_for(series))
        if not records:  # one record the usual way (a new block, a belated one, a refusal)
            ts, length, content_type, labels = specs[i]
            try:
                out.append(writer.allocate(context, owner, entry, ts, length, content_type,
                                           labels, acquire=False))
            except ReductError as exc:
                out.append(exc)
            i += 1
            continue
        block = series.blocks[-1]
        for record in records:
            out.append(writer.new_allocation(context, owner, series, entry, record.size,
                                             block.shared_path, False, block, record))
        i += len(records)
    return out
