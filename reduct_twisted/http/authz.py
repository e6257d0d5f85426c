# -*- test-case-name: tests.unit.test_route_permissions,tests.integration.test_auth -*-
"""
The authorization step of every route: the request's ``Authorization``
header, checked by the API's access policy (``auth/policy.py``).

Who may call a route is a column of the route table (``api.py``
``ROUTES``): a :class:`Permission`, applied by :func:`checked` when the
routes are registered (as Tahoe-LAFS's ``_authorized_route`` wraps
``@route``).  The permissions:

* :data:`OPEN`: no check (``/alive``);
* :data:`AUTHENTICATED`, :data:`FULL`: any valid token, a full-access token;
* :data:`READ`, :data:`WRITE`: read or write access to the bucket named by
  the route's ``<bucket>`` argument;
* ``p.body_first(parse)``: ``parse(request)`` runs before the check, for the
  routes whose spec order refuses a malformed body before the token; the
  handler receives what it returned as its last argument;
* ``p.on_open()``: a streamed upload, checked when its body is opened
  (``fastpath.py`` ``open_body``, from ``gotLength``), or before the handler
  when the request had no body framing (so nothing was opened);
* :data:`IN_HANDLER`: the handler calls :func:`authorize` itself (the
  permission depends on the method or the body, or the handler needs the
  caller's token).

A wrapper costs what the ``authorize`` call it replaces cost: one call of
``api.auth.check``, positional arguments, no Deferred, no dict.
"""

import inspect
from functools import wraps
from typing import Callable, Optional

from reduct_twisted.auth.policy import Policy

_AUTHORIZATION = b"authorization"

#: How a permission is applied.
_BEFORE, _BODY_FIRST, _ON_OPEN, _NONE, _HANDLER = (
    "before handler", "body first", "on open", "open", "in handler"
)


class Permission:
    """
    What a route requires of the caller's token, and when it is checked.

    :ivar policy: the ``Policy`` asked of ``api.auth.check``, or None
        (:data:`OPEN`, :data:`IN_HANDLER`).
    :ivar bucket: the name of the route argument naming the bucket (for
        ``READ`` and ``WRITE``), else None.
    :ivar when: one of ``"before handler"``, ``"body first"``, ``"on open"``,
        ``"open"`` (never checked), ``"in handler"``.
    :ivar parse: for ``"body first"``, ``parse(request)``.
    """

    __slots__ = ("policy", "bucket", "when", "parse")

    def __init__(
        self, policy: Optional[Policy], bucket: Optional[str] = None,
        when: str = _BEFORE, parse: Optional[Callable] = None,
    ) -> None:
        self.policy = policy
        self.bucket = bucket
        self.when = when
        self.parse = parse

    def __repr__(self) -> str:
        policy = self.policy.name if self.policy is not None else None
        return f"<Permission {policy} bucket={self.bucket} {self.when}>"

    def body_first(self, parse: Callable) -> "Permission":
        """This permission, checked after ``parse(request)`` succeeded."""
        return Permission(self.policy, self.bucket, _BODY_FIRST, parse)

    def on_open(self) -> "Permission":
        """This permission, checked when a streamed body is opened."""
        return Permission(self.policy, self.bucket, _ON_OPEN)

    @property
    def checked_by_layer(self) -> bool:
        """Whether the table layer (not the handler) applies this permission."""
        return self.policy is not None

    def check(self, api, request, bucket: Optional[str] = None) -> dict:
        """
        Apply the permission to ``request`` (``bucket``: the value of the
        route argument :attr:`bucket`).

        :return: the caller's token object (shared: do not change it).
        :raises Unauthorized: no bearer token, or an unknown one.
        :raises Forbidden: the token lacks the permission.
        """
        token = api.auth.check(request.getHeader(_AUTHORIZATION), self.policy, bucket)
        request.reduct_token_name = token.get("name")  # for the audit (until tokens sets it)
        return token


#: No check at all.
OPEN = Permission(None, when=_NONE)
#: The handler calls :func:`authorize` itself (say why in the table).
IN_HANDLER = Permission(None, when=_HANDLER)
#: Any valid token.
AUTHENTICATED = Permission(Policy.AUTHENTICATED)
#: A full-access token.
FULL = Permission(Policy.FULL_ACCESS)
#: Read access to the route's ``<bucket>``.
READ = Permission(Policy.READ, "bucket")
#: Write access to the route's ``<bucket>``.
WRITE = Permission(Policy.WRITE, "bucket")


def authorize(api, request, policy: Policy, bucket: Optional[str] = None) -> dict:
    """
    The explicit check, for the :data:`IN_HANDLER` routes.

    :param api: the ``ReductAPI``; its ``auth`` is the access policy.
    :param policy: what the operation requires of the caller's token.
    :param bucket: the bucket, for ``Policy.READ`` and ``Policy.WRITE``.
    :return: the caller's token object (shared: do not change it).
    :raises Unauthorized: no bearer token, or an unknown one.
    :raises Forbidden: the token lacks the permission.
    """
    token = api.auth.check(request.getHeader(_AUTHORIZATION), policy, bucket)
    request.reduct_token_name = token.get("name")  # for the audit (until tokens sets it)
    return token


def route_arguments(handler) -> tuple:
    """The names of ``handler``'s route arguments (after ``api, request``)."""
    return tuple(inspect.signature(handler).parameters)[2:]


def checked(handler, permission: Permission):
    """
    ``handler`` behind ``permission``: the callable to register for the route.

    ``handler(api, request, *route_args)`` (plus the parsed body, last, for
    a body-first permission).  The wrapper has the handler's own route
    argument names, so Klein passes them by name and the fast path by
    position, and a call builds no tuple or dict beyond Klein's own.

    :raises ValueError: the permission names a bucket argument the handler
        does not take.
    """
    if not permission.checked_by_layer:
        return handler
    names = route_arguments(handler)
    if permission.when == _BODY_FIRST:
        names = names[:-1]
    if permission.bucket is not None and permission.bucket not in names:
        raise ValueError(
            f"{handler.__name__}: permission {permission!r} needs a route "
            f"argument {permission.bucket!r}, not {names}"
        )
    make = _compile(names, permission)
    wrapper = wraps(handler)(make(handler, permission.check, permission.parse))
    wrapper.permission = permission
    return wrapper


#: Names the generated wrapper uses itself.
_RESERVED = frozenset({"api", "request", "handler", "check", "parse", "body"})


def _compile(names: tuple, permission: Permission):
    """
    A factory ``make(handler, check, parse) -> route`` for route arguments
    ``names`` (as ``collections.namedtuple`` and attrs build ``__init__``:
    the source is fixed but for the argument names, which are identifiers
    from the route table's paths).
    """
    for name in names:
        if not name.isidentifier() or name in _RESERVED:
            raise ValueError(f"unusable route argument name {name!r}")
    args = "".join(", " + name for name in names)
    bucket = permission.bucket or "None"
    lines = [f"def route(api, request{args}):"]
    if permission.when == _BODY_FIRST:
        lines += ["    body = parse(request)", f"    check(api, request, {bucket})",
                  f"    return handler(api, request{args}, body)"]
    elif permission.when == _ON_OPEN:
        # A streamed upload: open_body checked it, unless the request had
        # no body framing (nothing was opened, request.sink is None).
        lines += ["    if request.sink is None:", f"        check(api, request, {bucket})",
                  f"    return handler(api, request{args})"]
    else:
        lines += [f"    check(api, request, {bucket})", f"    return handler(api, request{args})"]
    source = "def make(handler, check, parse):\n" + "\n".join("    " + line for line in lines)
    source += "\n    return route\n"
    namespace: dict = {}
    exec(compile(source, f"<route permission {permission!r}>", "exec"), namespace)
    return namespace["make"]
