"""
Token calls of reduct-py (both generations) against a daemon started with
``RS_API_TOKEN``.

Usage: python reduct_py_tokens.py URL --token INIT_TOKEN [--bucket NAME] [--timeout S]

Uses only calls both 1.4.1 and the newest release have: ``me``,
``create_token``/``get_token``/``get_token_list``/``remove_token``, and
record reads and writes with tokens of limited rights.  A token that may
only write cannot ``get_bucket`` (that needs read access since 1.16), so its
``Bucket`` handle is built directly, as an application with such a token
would.
"""

import re

from _harness import eq, expect_error, run
from reduct import Client, Permissions, ReductError
from reduct.bucket import Bucket

T0 = 1_700_000_000_000_000


async def read_body(bucket, entry, ts):
    async with bucket.read(entry, timestamp=ts) as rec:
        return await rec.read_all()


async def main(checks, args):
    url, name = args.url, args.bucket
    admin = Client(url, api_token=args.token, timeout=30)

    me = await admin.me()
    eq(me.name, "init-token", "me.name")
    eq(me.permissions.full_access, True, "init-token has full access")
    eq((me.permissions.read, me.permissions.write), ([], []), "init-token lists")
    checks.ok("me-init-token")

    await expect_error(Client(url, timeout=30).info(), ReductError, 401,
                       "No bearer token in request header")
    await expect_error(Client(url, api_token="not-a-token", timeout=30).info(), ReductError,
                       401, "Invalid token")
    checks.ok("unauthenticated-refused")

    bucket = await admin.create_bucket(name, exist_ok=True)
    await bucket.write("e", b"written-by-admin", timestamp=T0)

    reader_name, writer_name = f"{name}-reader", f"{name}-writer"
    reader_value = await admin.create_token(
        reader_name, Permissions(full_access=False, read=[name], write=[])
    )
    writer_value = await admin.create_token(
        writer_name, Permissions(full_access=False, read=[], write=[name])
    )
    for token_name, value in ((reader_name, reader_value), (writer_name, writer_value)):
        if not re.fullmatch(re.escape(token_name) + r"-[0-9a-f]{32}", value):
            raise AssertionError(f"token value of {token_name} has the wrong shape")
    await expect_error(
        admin.create_token(reader_name, Permissions(full_access=False, read=[], write=[])),
        ReductError, 409, f"Token '{reader_name}' already exists",
    )
    checks.ok("create-tokens")

    token = await admin.get_token(reader_name)
    eq(token.name, reader_name, "get_token name")
    eq((token.permissions.full_access, token.permissions.read, token.permissions.write),
       (False, [name], []), "get_token permissions")
    listed = [t.name for t in await admin.get_token_list()]
    eq(listed, sorted(listed), "token list sorted by name")
    for expected in ("init-token", reader_name, writer_name):
        if expected not in listed:
            raise AssertionError(f"{expected} missing from {listed}")
    created = {t.name: t.created_at for t in await admin.get_token_list()}
    eq(created[reader_name], token.created_at, "created_at stable between list and get")
    checks.ok("get-and-list-tokens")

    reader = Client(url, api_token=reader_value, timeout=30)
    eq((await reader.me()).name, reader_name, "reader me")
    readable = await reader.get_bucket(name)
    eq(await read_body(readable, "e", T0), b"written-by-admin", "reader reads")
    await expect_error(readable.write("e", b"nope", timestamp=T0 + 1), ReductError, 403,
                       f"Token '{reader_name}' doesn't have write access to bucket '{name}'")
    await expect_error(reader.create_bucket(f"{name}-other"), ReductError, 403,
                       f"Token '{reader_name}' doesn't have full access")
    await expect_error(reader.get_token_list(), ReductError, 403,
                       f"Token '{reader_name}' doesn't have full access")
    checks.ok("read-only-token")

    writer = Client(url, api_token=writer_value, timeout=30)
    writable = Bucket(name, writer._http)
    await writable.write("e", b"written-by-writer", timestamp=T0 + 2)
    eq(await read_body(bucket, "e", T0 + 2), b"written-by-writer", "admin sees the write")
    await expect_error(read_body(writable, "e", T0), ReductError, 403,
                       f"Token '{writer_name}' doesn't have read access to bucket '{name}'")
    await expect_error(writer.get_bucket(name), ReductError, 403,
                       f"Token '{writer_name}' doesn't have read access to bucket '{name}'")
    checks.ok("write-only-token")

    await admin.remove_token(reader_name)
    await expect_error(admin.get_token(reader_name), ReductError, 404,
                       f"Token '{reader_name}' doesn't exist")
    await expect_error(reader.me(), ReductError, 401, "Invalid token")
    await expect_error(admin.remove_token("init-token"), ReductError, 409,
                       "Can't remove provisioned token 'init-token'")
    await admin.remove_token(writer_name)
    await bucket.remove()
    checks.ok("remove-tokens")


if __name__ == "__main__":
    run(main)
