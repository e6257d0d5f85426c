"""
Tokens v2 through reduct-py 1.21 (API 1.19+, spec 1.20 §4) against a daemon
started with ``RS_API_TOKEN``.

Usage: python reduct_py_tokens_v2.py URL --token INIT_TOKEN [--bucket NAME] [--timeout S]

``create_token`` with ``expires_at``, ``ttl`` and ``ip_allowlist`` (the
nested body), ``get_token`` and ``get_token_list`` with the new fields,
``me``, ``rotate_token`` (the old value refused at once, the new one
working, ``created_at`` moved), an allowlist that excludes the loopback
client, ``$system`` items accepted verbatim, and the error texts.
"""

import re
from datetime import datetime, timedelta, timezone

from _harness import eq, expect_error, run
from reduct import Client, Permissions, ReductError


async def main(checks, args):
    url, name = args.url, args.bucket
    admin = Client(url, api_token=args.token, timeout=30)
    me = await admin.me()
    eq((me.name, me.ip_allowlist, me.is_expired, me.ttl, me.expires_at), ("init-token", [], False, None, None),
       "me of init-token")
    checks.ok("me-v2-fields")

    await admin.create_bucket(name, exist_ok=True)
    expires = (datetime.now(timezone.utc) + timedelta(days=1)).replace(microsecond=0)
    token_name = f"{name}-v2"
    value = await admin.create_token(
        token_name, Permissions(full_access=False, read=[name], write=[name]),
        expires_at=expires, ttl=3600, ip_allowlist=["127.0.0.1", "10.0.0.0/8"],
    )
    if not re.fullmatch(re.escape(token_name) + r"-[0-9a-f]{32}", value):
        raise AssertionError("token value has the wrong shape")
    token = await admin.get_token(token_name)
    eq((token.expires_at, token.ttl, token.ip_allowlist, token.last_access, token.is_expired, token.is_provisioned),
       (expires, 3600, ["127.0.0.1", "10.0.0.0/8"], None, False, False), "get_token v2 fields")
    eq((token.permissions.full_access, token.permissions.read, token.permissions.write),
       (False, [name], [name]), "get_token permissions")
    listed = {t.name: t for t in await admin.get_token_list()}
    eq((listed[token_name].ttl, listed[token_name].expires_at), (3600, expires), "list item v2 fields")
    checks.ok("create-and-get-v2")

    user = Client(url, api_token=value, timeout=30)
    mine = await user.me()
    eq((mine.name, mine.ttl, mine.ip_allowlist), (token_name, 3600, ["127.0.0.1", "10.0.0.0/8"]), "me of v2 token")
    bucket = await user.get_bucket(name)
    await bucket.write("e", b"by-v2-token", timestamp=1)
    checks.ok("v2-token-works")

    created_before = token.created_at
    new_value = await admin.rotate_token(token_name)
    if new_value == value or not new_value.startswith(token_name + "-"):
        raise AssertionError("rotation did not give a new value")
    await expect_error(user.me(), ReductError, 401, "Invalid token")
    rotated = Client(url, api_token=new_value, timeout=30)
    eq((await rotated.me()).name, token_name, "me with the rotated value")
    if (await admin.get_token(token_name)).created_at < created_before:
        raise AssertionError("rotation moved created_at back")
    await expect_error(admin.rotate_token("init-token"), ReductError, 409, "Can't rotate init token")
    await expect_error(admin.rotate_token(f"{name}-none"), ReductError, 404, f"Token '{name}-none' doesn't exist")
    checks.ok("rotate-token")

    far_name = f"{name}-far"
    far = await admin.create_token(far_name, Permissions(full_access=True), ip_allowlist=["203.0.113.10"])
    await expect_error(Client(url, api_token=far, timeout=30).me(), ReductError, 401,
                       "Token is not allowed for client IP 127.0.0.1")
    checks.ok("ip-allowlist-refuses")

    system_name = f"{name}-sys"
    await admin.create_token(system_name, Permissions(read=["$system", "*"]))
    eq((await admin.get_token(system_name)).permissions.read, ["$system", "*"], "$system item kept")
    await expect_error(admin.create_token(f"{name}-ttl0", Permissions(), ttl=0), ReductError, 422,
                       "Token TTL must be greater than zero")
    past = datetime.now(timezone.utc) - timedelta(days=1)
    await expect_error(admin.create_token(f"{name}-past", Permissions(), expires_at=past), ReductError, 422,
                       "Token expiration date must not be in the past")
    await expect_error(admin.create_token(token_name, Permissions()), ReductError, 409,
                       f"Token '{token_name}' already exists")
    checks.ok("create-refusals")

    for removed in (token_name, far_name, system_name):
        await admin.remove_token(removed)
    await (await admin.get_bucket(name)).remove()
    checks.ok("cleanup")


if __name__ == "__main__":
    run(main)
