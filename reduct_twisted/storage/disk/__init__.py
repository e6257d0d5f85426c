"""
The disk side of the storage core: what its files look like and how it
keeps them safe across crashes, apart from the domain objects (buckets,
entries, blocks, records, queries) one level up.

* ``layout.py``: which names below a data directory are ours, the format
  marker, and the read-only classification of a directory at start.
* ``blockfile.py``: the on-disk format of one block (file names, the
  versioned ``.meta`` line format) and atomic file replacement.
* ``recovery.py``: start-up after a crash: the run marker, checking what
  the last run wrote, quarantining damaged blocks.
* ``durability.py``: the dirty set handed to a sync policy, and how disk
  errors become client errors (507/500).
* ``trash.py``: removal by renaming into ``.trash``, deletion later.
* ``reserve.py``: the space reserve that lets removals work on a full disk.
* ``holes.py``: punching holes over dead bytes of shared segments.
* ``blockindex.py``: the per-entry block index ``.blocks``, a checked cache
  of every block's summary that spares reading each ``.meta`` at open.

The order of file operations that all of them serve is drawn in
``storage/engine.py``.  Nothing is re-exported here: import the module.
"""
