# -*- test-case-name: tests.unit.test_console_routes -*-
"""
The web console (issue #18 item 1): ``GET {base}`` redirects to
``{base}ui/`` as upstream does (spec §1.1), and ``GET {base}ui/<file>``
serves the console's files, which ``reduct_twisted.ui`` read from package
data when the API was built.  Anonymous: the files hold no data; the
console's own API calls carry the token the user typed.

Every file is answered with its content type, a strong ``ETag`` and
``cache-control: no-cache`` (the names carry no version, so a browser
revalidates and gets a ``304`` while the file is unchanged), and the
headers that keep the page to its own origin's scripts.
"""

from reduct_twisted.errors import ReductError
from reduct_twisted.http.headers import respond_empty

#: The console's own files and the API of its origin, nothing else; blob:
#: and data: for the previews of records it downloads itself.
SECURITY_HEADERS = (
    (b"content-security-policy",
     b"default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
     b"object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)


def console_root(api, request):
    """``GET {base}``: ``302 Found`` to ``{base}ui/``."""
    request.setHeader(b"location", api.console.location)
    return respond_empty(request, 302)


def console_slash(api, request):
    """``GET {base}ui``: ``302 Found`` to ``{base}ui/`` (the page's links are relative)."""
    return console_root(api, request)


def console_index(api, request):
    """``GET {base}ui/``: the console's page."""
    return _serve(api, request, "")


def console_file(api, request, name):
    """``GET {base}ui/<name>``: one of the console's files, or 404."""
    return _serve(api, request, name)


def _serve(api, request, name: str) -> bytes:
    asset = api.console.find(name)
    if asset is None:
        raise ReductError("Not found", 404)
    for header, value in SECURITY_HEADERS:
        request.setHeader(header, value)
    request.setHeader(b"cache-control", b"no-cache")
    request.setHeader(b"etag", asset.etag)
    wanted = request.getHeader(b"if-none-match")
    if wanted is not None and asset.etag in (t.strip() for t in wanted.split(b",")):
        return respond_empty(request, 304)
    request.setResponseCode(200)
    request.setHeader(b"content-type", asset.content_type)
    request.setHeader(b"content-length", b"%d" % len(asset.body))
    if request.method == b"HEAD":
        return b""
    return asset.body
