"""
Query links of the newest reduct-py (``Bucket.create_query_link``, API
1.19+: the record named by ``record_entry`` + ``record_timestamp``) against
a daemon with ``RS_API_TOKEN``, each link downloaded with plain aiohttp,
without a token, as a browser would.

Usage: python reduct_py_links.py URL --token INIT_TOKEN --public-url BASE
       [--bucket NAME] [--timeout S]

The daemon's ``public_url`` is ``BASE`` (not its real address): a link made
without ``base_url`` must start with it and is fetched at URL instead.
"""

import sys
from datetime import datetime, timedelta

import aiohttp
from _harness import eq, run
from reduct import Client, Permissions

T0 = 1_700_000_000_000_000
PUBLIC = sys.argv.pop(sys.argv.index("--public-url") + 1)
sys.argv.remove("--public-url")


async def download(link, headers=None):
    async with aiohttp.ClientSession() as session:
        async with session.get(link, headers=headers or {}) as resp:
            return resp.status, dict(resp.headers), await resp.read()


async def main(checks, args):
    url, name = args.url, args.bucket
    admin = Client(url, api_token=args.token, timeout=30)
    bucket = await admin.create_bucket(name, exist_ok=True)
    for i in range(5):
        await bucket.write("cam-a", b"a%d" % i, timestamp=T0 + 2 * i,
                           labels={"n": str(i)}, content_type="image/x-test")
        await bucket.write("cam-b", b"b%d" % i, timestamp=T0 + 2 * i + 1, labels={"n": str(i)})

    link = await bucket.create_query_link("cam-a", record_timestamp=T0 + 4)
    if not link.startswith(f"{PUBLIC}api/v1/links/cam-a_{T0 + 4}.bin?ct="):
        raise AssertionError(f"link without base_url: {link}")
    local = url.rstrip("/") + "/" + link[len(PUBLIC):]
    status, headers, body = await download(local)
    eq((status, body), (200, b"a2"), "download of cam-a@+4")
    eq(headers.get("x-reduct-entry"), "cam-a", "x-reduct-entry")
    eq(headers.get("x-reduct-time"), str(T0 + 4), "x-reduct-time")
    eq(headers.get("x-reduct-label-n"), "2", "label")
    eq(headers.get("Content-Type"), "image/x-test", "content type")
    eq(headers.get("Content-Disposition"), f'attachment; filename="cam-a_{T0 + 4}.bin"',
       "content disposition")
    checks.ok("public-url-and-identity")

    link = await bucket.create_query_link(
        "cam-a", start=T0 + 2, stop=T0 + 9, when={"&n": {"$gte": 2}},
        record_timestamp=T0 + 6, base_url=url, file_name="sub/dir/pic.bin")
    if not link.startswith(url.rstrip("/") + "/api/v1/links/sub/dir/pic.bin?"):
        raise AssertionError(f"link with base_url: {link}")
    eq((await download(link))[2], b"a3", "download with when")
    status, headers, body = await download(link + f"&e=cam-a&ts={T0 + 2}")
    eq(status, 404, "a record the query does not produce")
    eq(headers.get("x-reduct-error"), f"Record cam-a/{T0 + 2} not found in query result",
       "not found text")
    eq((await download(link + f"&e=cam-a&ts={T0 + 8}"))[2], b"a4", "e+ts override")
    checks.ok("query-when-and-override")

    link = await bucket.create_query_link(["cam-a", "cam-b"], record_entry="cam-b",
                                          record_timestamp=T0 + 5, base_url=url)
    status, headers, body = await download(link)
    eq((status, body, headers.get("x-reduct-entry")), (200, b"b2", "cam-b"), "multi-entry")
    link = await bucket.create_query_link(["cam-*"], record_entry="cam-a",
                                          record_timestamp=T0, base_url=url)
    eq((await download(link))[2], b"a0", "pattern entries")
    checks.ok("multi-entry")

    status, headers, body = await download(link, {"Range": "bytes=1-"})
    eq((status, body, headers.get("Content-Range")), (206, b"0", "bytes 1-1/2"), "range")
    status, headers, _ = await download(link, {"Range": "bytes=5-"})
    eq((status, headers.get("Content-Range")), (416, "bytes */2"), "unsatisfiable range")
    checks.ok("ranges")

    try:
        await bucket.create_query_link("cam-a", record_index=1, base_url=url)
    except ValueError as exc:
        if "record_entry + record_timestamp" not in str(exc):
            raise
    else:
        raise AssertionError("reduct-py sent a numeric index to an API 1.20 server")
    checks.ok("client-refuses-index-at-1.20")

    link = await bucket.create_query_link("cam-a", record_timestamp=T0, base_url=url,
                                          expire_at=datetime.now() - timedelta(seconds=5))
    status, headers, _ = await download(link)
    eq((status, headers.get("x-reduct-error")), (422, "Query link has expired"), "expired")
    checks.ok("expired")

    reader = f"{name}-links"
    value = await admin.create_token(reader, Permissions(full_access=False, read=[name],
                                                         write=[]))
    mine = Client(url, api_token=value, timeout=30)
    link = await (await mine.get_bucket(name)).create_query_link(
        "cam-b", record_timestamp=T0 + 1, base_url=url)
    eq("&i=" + reader + "&" in link, True, "issuer in the link")
    eq((await download(link))[2], b"b0", "link of a read-only token")
    await admin.remove_token(reader)
    status, headers, _ = await download(link)
    eq((status, headers.get("x-reduct-error")), (404, f"Token '{reader}' doesn't exist"),
       "issuer deleted")
    checks.ok("issuing-token")

    await bucket.remove()
    checks.ok("remove-bucket")


if __name__ == "__main__":
    run(main)
