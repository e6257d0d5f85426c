"""
reduct-twisted: a ReductStore-compatible time-series blob store on Twisted.

``__version__`` is this package's own version; ``REDUCT_VERSION`` is the
ReductStore server release whose HTTP API we implement and advertise.
"""

__version__ = "0.1.0"

#: The upstream server release whose behaviour we reproduce (``/info`` version).
REDUCT_VERSION = "1.20.0"

#: ``x-reduct-api``: major.minor of ``REDUCT_VERSION`` (always two components).
REDUCT_API = ".".join(REDUCT_VERSION.split(".")[:2])
