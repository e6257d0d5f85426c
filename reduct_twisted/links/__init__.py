"""
Query links (spec 1.20 §6.1, §6.2): the signed, expiring URL parameters
that let anyone holding a link download one record of a stored query
without a token of their own.

* ``codec.py``: what a link carries (:class:`~reduct_twisted.links.codec.LinkQuery`)
  and its encoding into the ``ct``/``s``/``i``/``n`` parameters, signed
  with HMAC-SHA256 and bound to the issuing token;
* ``key.py``: the server's signing key (configured, or a random key file in
  the data directory).

The routes are ``http/links.py``.  Nothing here knows about HTTP or storage.
"""

from reduct_twisted.links.codec import LinkCodec, LinkQuery, Links
from reduct_twisted.links.key import KEY_FILE, load_or_create_key

__all__ = ["KEY_FILE", "LinkCodec", "LinkQuery", "Links", "load_or_create_key"]
