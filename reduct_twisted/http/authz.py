# -*- test-case-name: tests.integration.test_auth -*-
"""
The authorization step of every route: the request's ``Authorization``
header, checked by the API's access policy (``auth/policy.py``).  Route
modules call :func:`authorize` first (after parsing a JSON body, for the
routes whose spec order refuses a malformed body before the token).
"""

from typing import Optional

from reduct_twisted.auth.policy import Policy


def authorize(api, request, policy: Policy, bucket: Optional[str] = None) -> dict:
    """
    :param api: the ``ReductAPI``; its ``auth`` is the access policy.
    :param policy: what the operation requires of the caller's token.
    :param bucket: the bucket, for ``Policy.READ`` and ``Policy.WRITE``.
    :return: the caller's token object (shared: do not change it).
    :raises Unauthorized: no bearer token, or an unknown one.
    :raises Forbidden: the token lacks the permission.
    """
    return api.auth.check(request.getHeader(b"authorization"), policy, bucket)
