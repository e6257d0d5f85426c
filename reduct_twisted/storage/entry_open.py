"""
Opening an entry from its directory (``Entry.load``): its blocks from the
block index or their ``.meta`` files, leftovers trashed, damaged blocks
quarantined, the number counter read.
"""

import os

from reduct_twisted.storage.disk import blockfile
from reduct_twisted.storage.disk.blockindex import INDEX_FILE
from reduct_twisted.storage.disk.layout import LOG_DIR, NUMBERS_FILE, is_child_entry_dir, is_entry_file
from reduct_twisted.storage.indexing import IndexOpener
from reduct_twisted.storage.numbers import Numbers
from reduct_twisted.storage.settings import is_meta_entry


def load_entry(entry, children=None):
    """
    Fill ``entry`` (new, empty) from its directory; see ``Entry.load``.

    :param children: as ``Entry.load``'s (names of child entry directories).

    :return: ``entry``.
    """
    name, directory, context = entry.name, entry.directory, entry.context
    meta = is_meta_entry(name)
    recovery = context.recovery
    files, stats, stale, unknown, counter, index, block_items = {}, {}, [], [], False, False, {}
    with os.scandir(directory) as items:
        for item in items:
            found = blockfile.classify(item.name)
            if item.is_dir(follow_symlinks=False) and is_child_entry_dir(item.name, meta):
                if children is not None:
                    children.append(item.name)
                continue  # a child entry (``Bucket.load`` loads it)
            if item.name == NUMBERS_FILE:
                counter = True
                continue
            if item.name == INDEX_FILE and item.is_file(follow_symlinks=False):
                index = True  # the block index (``indexing.py``)
                continue
            if item.name == LOG_DIR and item.is_dir(follow_symlinks=False):
                continue  # the entry's log (``entry_log.py``), opened on first use
            if item.is_dir(follow_symlinks=False) or not is_entry_file(item.name):
                unknown.append(item.name)
            elif found is not None:
                files[item.name] = found
                if found[1] is None:
                    block_items[item.name] = item  # a .meta or a shared segment
                if recovery.unclean:
                    stats[item.name] = item.stat(follow_symlinks=False)
            else:
                stale.append(item.name)
    if unknown:
        recovery.leave(directory, unknown)
    keep, opener = set(), IndexOpener(directory, index, recovery, files, block_items)
    metas = [found[0] for found in files.values() if found[2] == blockfile.META_SUFFIX]
    for block_id in sorted(metas):
        try:
            block = opener.open(block_id, stats)
        except blockfile.DamagedMeta as exc:
            names = {n for n, found in files.items() if found[0] == block_id}
            keep |= names
            recovery.quarantine(directory, block_id, names, exc.message)
            continue
        if block.record_count:
            entry._insert(len(entry.blocks), block)
            keep.update(block.file_names())
    unused = [n for n in sorted(files) if n not in keep] + sorted(stale + opener.finish(entry))
    context.trash([os.path.join(directory, n) for n in unused])
    try:
        entry.numbers = Numbers.load(directory, entry.blocks, counter, context)
    except OSError as exc:
        recovery.problems.append(f"Could not write the number counter of {directory}: {exc}")
    return entry
