# -*- test-case-name: tests.unit.test_auth -*-
"""
Who may do what: the single place every route asks.

Policies follow ReductStore (spec §1.5).  ``OpenAccess`` is the policy
engine when authentication is disabled (no ``RS_API_TOKEN``): every check
passes, and the caller is the ``AUTHENTICATION-DISABLED`` pseudo-token.
Nothing here knows about HTTP: the routes hand over the ``Authorization``
header value.
"""

import enum
from datetime import datetime, timezone
from typing import Optional


class Policy(enum.Enum):
    """What an operation requires of the caller's token."""

    ANONYMOUS = "anonymous"
    AUTHENTICATED = "authenticated"
    FULL_ACCESS = "full_access"
    READ = "read"
    WRITE = "write"


def iso_timestamp(seconds: float) -> str:
    """RFC 3339 UTC with microseconds and a ``Z``, stable for a given value."""
    moment = datetime.fromtimestamp(seconds, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class OpenAccess:
    """
    Authorization with authentication disabled: every check passes.

    :param clock: provides ``seconds()``; ``/me`` reports "now" as upstream
        1.7+ does.
    """

    enabled = False

    def __init__(self, clock) -> None:
        self._clock = clock
        self._token: dict = {}
        self._token_second = -1

    def check(
        self, authorization: Optional[bytes], policy: Policy, bucket: Optional[str] = None
    ) -> dict:
        """
        Return the caller's token info, or raise ``Unauthorized`` /
        ``Forbidden``.  With authentication off this always succeeds.
        """
        return self.anonymous_token()

    def anonymous_token(self) -> dict:
        """
        The ``AUTHENTICATION-DISABLED`` pseudo-token, created "now" (it is
        built once per second: every request asks for it).
        """
        second = int(self._clock.seconds())
        if second != self._token_second:
            self._token_second = second
            self._token = {
                "name": "AUTHENTICATION-DISABLED",
                "value": "",
                "created_at": iso_timestamp(second),
                "permissions": {"full_access": True, "read": [], "write": []},
                "is_provisioned": False,
            }
        return self._token
