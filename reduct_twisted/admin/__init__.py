"""
The admin CLI (``reduct-twisted`` console script, ``python -m reduct_twisted``):
``fsck`` checks a stopped daemon's data directory offline (``fsck.py``),
``export``/``import`` copy a bucket to and from a folder over HTTP
(``transfer.py``, ``folder.py``), ``verify`` checks a server's integrity log
(``reduct_twisted/verifier/``).
"""
