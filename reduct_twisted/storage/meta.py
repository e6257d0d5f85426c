"""
Attachment entries (``<entry>/$meta`` and a top-level ``$meta``, spec 1.20
§3.1): the rules that make them differ from other entries, in one place.

* every record written to one carries label ``key``, never ``remove=true``
  (:func:`check_write`);
* a write with ``key=K`` replaces the live records with ``key=K``
  (:func:`superseded`: the engine removes them before it commits the new one);
* an attachment is removed by a label update ``remove=true`` (a tombstone,
  an ordinary label update); queries do not see tombstones unless their
  ``include`` names ``remove`` (:func:`effective_exclude`, also for the
  multi-entry queries of the I/O API);
* records are never removed by timestamp or query, and the entry only with
  its parent (:func:`refuse_record_removal`, :func:`refuse_entry_removal`).

Listing, statistics and quotas hide or spare them (``bucket.py``).
"""

from reduct_twisted.errors import UnprocessableEntity
from reduct_twisted.storage.records import FINISHED
from reduct_twisted.storage.settings import is_meta_entry

#: The label naming an attachment.
KEY_LABEL = "key"
#: The tombstone label and value.
REMOVE_LABEL, REMOVE_VALUE = "remove", "true"

__all__ = [
    "KEY_LABEL",
    "REMOVE_LABEL",
    "check_write",
    "effective_exclude",
    "is_meta_entry",
    "refuse_entry_removal",
    "refuse_record_removal",
    "superseded",
]


def check_write(entry: str, labels: dict) -> None:
    """
    :param entry: the entry a record is written to.
    :param labels: the record's labels.
    :raises UnprocessableEntity: ``entry`` is an attachment entry and the
        record has no label ``key``, or has ``remove=true``.
    """
    if not is_meta_entry(entry):
        return
    if KEY_LABEL not in labels:
        raise UnprocessableEntity(f"System entry '{entry}' records must contain label 'key'")
    if labels.get(REMOVE_LABEL) == REMOVE_VALUE:
        raise UnprocessableEntity(
            f"System entry '{entry}' does not support writing records with label "
            f"'remove=true'; use record update"
        )


def effective_exclude(entry: str, include, exclude) -> dict:
    """
    The ``exclude`` labels a query over ``entry`` runs with: an attachment
    entry's queries leave out tombstones (``remove=true``) unless
    ``include`` names ``remove``.

    :param entry: the queried entry's name.
    :param include: the query's ``include`` labels (or ``None``).
    :param exclude: its ``exclude`` labels (or ``None``).
    :return: the labels to exclude (a new dict).
    """
    exclude = dict(exclude or {})
    if is_meta_entry(entry) and REMOVE_LABEL not in (include or {}) \
            and REMOVE_LABEL not in exclude:
        exclude[REMOVE_LABEL] = REMOVE_VALUE
    return exclude


def refuse_record_removal(entry: str) -> None:
    """:raises UnprocessableEntity: ``entry`` is an attachment entry."""
    if is_meta_entry(entry):
        raise UnprocessableEntity(
            f"Can't delete records from system entry '{entry}'; use label update with "
            f"remove=true"
        )


def refuse_entry_removal(entry: str) -> None:
    """:raises UnprocessableEntity: ``entry`` is an attachment entry."""
    if is_meta_entry(entry):
        raise UnprocessableEntity(
            f"Can't delete system entry '{entry}'; remove the parent entry instead"
        )


def superseded(series, key: str, ts: int) -> dict:
    """
    The live attachments a new record ``ts`` with ``key=<key>`` replaces.

    Attachment entries are small (few records, 128 KiB blocks), so every
    block is looked at.

    :param series: the attachment :class:`~reduct_twisted.storage.entry.Entry`.
    :return: block -> timestamps of its finished records with label
        ``key=<key>`` and no tombstone, ``ts`` aside.
    """
    found = {}
    for block in series.blocks:
        for record in list(series.load_block(block).table.values()):
            labels = record.labels
            if (record.state == FINISHED and record.ts != ts and labels.get(KEY_LABEL) == key
                    and labels.get(REMOVE_LABEL) != REMOVE_VALUE):
                found.setdefault(block, []).append(record.ts)
    return found
