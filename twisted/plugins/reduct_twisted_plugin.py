"""
twistd plugin: ``twistd reduct``.  Only a ServiceMaker, which imports
``reduct_twisted.tap`` lazily so ``twistd --help`` stays cheap.

There is deliberately no ``__init__.py`` in ``twisted/`` or
``twisted/plugins/``: Twisted's own ``twisted.plugins`` package collects this
directory from every ``sys.path`` entry.
"""

from twisted.application.service import ServiceMaker

reduct = ServiceMaker(
    "reduct-twisted",
    "reduct_twisted.tap",
    "A ReductStore-compatible time-series blob store.",
    "reduct",
)
