"""
The console's entries and records in a real browser (issue #18 item 1):
the tree of nested entry paths with counts and time ranges, the chart of
records over time, the record browser over a time range with a ``when``
condition, a record's labels, content type, size and digest, previews of
JSON, text and images, download, upload of a file as a record, label
editing and removal, and the in-browser check of an inclusion proof.
"""

import base64
import hashlib
import json
import struct
import zlib

import pytest

from tests.browser.conftest import shot
from tests.browser.test_console_buckets import login


def png(width=4, height=3) -> bytes:
    """A real PNG of red pixels (no imaging library needed)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def seed(d, bucket):
    d.json("POST", f"/b/{bucket}", {})
    for i in range(1, 21):
        body = json.dumps({"n": i, "kind": "even" if i % 2 == 0 else "odd"}).encode()
        status, _, _ = d.call("POST", f"/b/{bucket}/cam/front?ts={i * 1_000_000}", body, {
            "content-type": "application/json", "x-reduct-label-kind": "even" if i % 2 == 0 else "odd",
            "x-reduct-label-n": str(i)})
        assert status == 200
    for i in range(1, 4):
        assert d.call("POST", f"/b/{bucket}/cam/back?ts={i * 5_000_000}", b"back %d" % i,
                      {"content-type": "text/plain"})[0] == 200
    assert d.call("POST", f"/b/{bucket}/img?ts=7000000", png(), {"content-type": "image/png"})[0] == 200


def open_entry(page, d, bucket, entry):
    login(page, d)
    page.goto(d.console + "#/b/" + bucket)
    page.locator(f"button.entry[data-entry='{entry}']").click()
    page.locator("#chart").wait_for()


@pytest.fixture
def rec(auth_daemon, request):
    bucket = "rec-" + hashlib.sha1(request.node.name.encode()).hexdigest()[:8]
    seed(auth_daemon, bucket)
    return bucket


def test_entry_tree_counts_and_chart(page, auth_daemon, rec):
    d = auth_daemon
    login(page, d)
    page.goto(d.console + "#/b/" + rec)
    tree = page.locator("ul.tree").first
    tree.locator("button.entry[data-entry='cam/front']").wait_for()
    cam = tree.locator("li", has=page.locator("button.entry[data-entry='cam']")).first
    # The parent sums its children: 20 + 3 records, from 1 s to 20 s.
    assert "23 records" in cam.inner_text().splitlines()[0]
    assert "1970-01-01T00:00:01.000000Z … 1970-01-01T00:00:20.000000Z" in cam.inner_text()
    assert tree.locator("button.entry[data-entry='cam/back']").count() == 1
    page.locator("button.entry[data-entry='cam/front']").click()
    bars = page.locator("#chart svg rect.bar")
    bars.first.wait_for()
    counts = [int(b.get_attribute("data-count")) for b in bars.all()]
    assert sum(counts) == 20
    page.locator("#record-table tbody tr").first.wait_for()
    assert page.locator("#record-table tbody tr").count() == 20
    shot(page, "console-entry")
    # README's picture (docs/console.png is a copy of this one).
    page.set_viewport_size({"width": 1280, "height": 1000})
    shot(page, "console-readme", full_page=False)


def test_browser_range_when_details_and_previews(page, auth_daemon, rec):
    from playwright.sync_api import expect
    d = auth_daemon
    open_entry(page, d, rec, "cam/front")
    form = page.locator("#browse")
    form.locator("input[name=start]").fill("1970-01-01T00:00:05Z")
    form.locator("input[name=stop]").fill("15000000")
    form.locator("input[name=when]").fill('{"&kind": {"$eq": "even"}}')
    form.locator("button[type=submit]").click()
    expect(page.locator("#record-table tbody tr")).to_have_count(5)
    times = [r.get_attribute("data-ts") for r in page.locator("#record-table tbody tr").all()]
    assert times == [str(n * 1_000_000) for n in (6, 8, 10, 12, 14)]
    assert "kind=even" in page.locator("#record-table tbody tr").first.inner_text()
    # A malformed condition shows the server's refusal, not a crash.
    form.locator("input[name=when]").fill('{"&kind": {"$nope": 1}}')
    form.locator("button[type=submit]").click()
    page.locator("#entry-status.error").wait_for()
    # A date alone is its midnight: every record again.
    form.locator("input[name=start]").fill("1970-01-01")
    form.locator("input[name=stop]").fill("")
    form.locator("input[name=when]").fill("")
    form.locator("button[type=submit]").click()
    expect(page.locator("#record-table tbody tr")).to_have_count(20)

    page.locator("#record-table tr[data-ts='8000000'] button").click()
    page.locator("#preview pre").wait_for()
    assert json.loads(page.inner_text("#preview pre")) == {"n": 8, "kind": "even"}
    assert page.inner_text("[data-fact='content-type']") == "application/json"
    _, headers, _ = d.call("HEAD", f"/b/{rec}/cam/front?ts=8000000")
    assert page.inner_text("[data-fact='digest']") == headers["repr-digest"]
    digest = base64.b64encode(hashlib.sha256(json.dumps({"n": 8, "kind": "even"}).encode()).digest())
    assert headers["repr-digest"] == f"sha-256=:{digest.decode()}:"

    # Another entry of the tree (still on the page): its panel replaces this one.
    page.locator("button.entry[data-entry='img']").click()
    page.locator("#record-table tr[data-ts='7000000'] button").click()
    img = page.locator("#preview img")
    img.wait_for()
    # (no wait_for_function: the console's CSP forbids the eval it needs)
    expect(img).to_have_js_property("naturalWidth", 4)
    page.locator("button.entry[data-entry='cam/back']").click()
    page.locator("#record-table tr[data-ts='10000000'] button").click()
    page.locator("#preview pre").wait_for()
    assert page.inner_text("#preview pre") == "back 2"


def test_the_record_browser_pages_through_a_long_range(page, auth_daemon):
    """More records than a page: "Next" goes on after the last one shown, with the
    same range end and condition, until the last page."""
    from playwright.sync_api import expect
    d, bucket = auth_daemon, "paging"
    d.json("POST", f"/b/{bucket}", {})
    for i in range(1, 121):
        assert d.call("POST", f"/b/{bucket}/many?ts={i}", b"x%d" % i,
                      {"x-reduct-label-kind": "odd" if i % 2 else "even"})[0] == 200
    open_entry(page, d, bucket, "many")
    form = page.locator("#browse")
    form.locator("input[name=stop]").fill("111")
    form.locator("input[name=when]").fill('{"&kind": {"$eq": "odd"}}')
    form.locator("button[type=submit]").click()
    rows = page.locator("#record-table tbody tr")
    # the odd stamps before 111 (the range end is exclusive): 1, 3 ... 109, 55 of them
    expect(rows.nth(1)).to_have_attribute("data-ts", "3")  # the query's table, not the entry's first
    expect(rows).to_have_count(50)
    seen = [int(r.get_attribute("data-ts")) for r in rows.all()]
    page.locator("#next-page").click()
    expect(rows.first).to_have_attribute("data-ts", "101")
    expect(rows).to_have_count(5)
    seen += [int(r.get_attribute("data-ts")) for r in rows.all()]
    assert seen == list(range(1, 111, 2))
    assert page.locator("#next-page").count() == 0  # the last page


def test_label_edit_and_record_removal(page, auth_daemon, rec):
    d = auth_daemon
    open_entry(page, d, rec, "cam/front")
    page.locator("#record-table tr[data-ts='3000000'] button").click()
    editor = page.locator("#labels-form")
    editor.locator("tr").first.wait_for()
    rows = editor.locator("tbody tr")
    for i in range(rows.count()):
        if rows.nth(i).locator(".label-key").input_value() == "kind":
            rows.nth(i).locator(".label-value").fill("changed")
        elif rows.nth(i).locator(".label-key").input_value() == "n":
            rows.nth(i).get_by_role("button", name="×").click()
            break
    editor.get_by_role("button", name="Add label").click()
    editor.locator("tbody tr").last.locator(".label-key").fill("added")
    editor.locator("tbody tr").last.locator(".label-value").fill("yes")
    editor.get_by_role("button", name="Save labels").click()
    page.get_by_text("Labels saved").wait_for()
    _, headers, _ = d.call("HEAD", f"/b/{rec}/cam/front?ts=3000000")
    labels = {k[len("x-reduct-label-"):]: v for k, v in headers.items() if k.startswith("x-reduct-label-")}
    assert labels == {"kind": "changed", "added": "yes"}

    page.locator("#remove-record").click()
    page.get_by_text("Record removed").wait_for()
    assert d.call("HEAD", f"/b/{rec}/cam/front?ts=3000000")[0] == 404
    assert d.call("HEAD", f"/b/{rec}/cam/front?ts=4000000")[0] == 200
    assert page.locator("#record-table tr[data-ts='3000000']").count() == 0


def test_upload_and_download(page, auth_daemon, rec):
    d = auth_daemon
    open_entry(page, d, rec, "cam/back")
    payload = bytes(range(256)) * 40
    upload = page.locator("#upload")
    upload.locator("input[type=file]").set_input_files(
        files=[{"name": "blob.bin", "mimeType": "application/x-test", "buffer": payload}])
    upload.locator("input[name=ts]").fill("1970-01-01T00:00:30.000123Z")
    upload.locator("input[name=labels]").fill("source=browser, run=7")
    upload.get_by_role("button", name="Upload").click()
    page.get_by_text("Uploaded blob.bin at 30000123").wait_for()
    status, headers, body = d.call("GET", f"/b/{rec}/cam/back?ts=30000123")
    assert (status, body) == (200, payload)
    assert headers["content-type"] == "application/x-test"
    assert (headers["x-reduct-label-source"], headers["x-reduct-label-run"]) == ("browser", "7")

    page.locator("#record-table tr[data-ts='30000123'] button").click()
    page.get_by_text("No preview for this content type or size.").wait_for()
    with page.expect_download() as info:
        page.locator("#download").click()
    download = info.value
    assert download.suggested_filename == "cam_back-30000123"
    with open(download.path(), "rb") as f:
        assert f.read() == payload


def test_inclusion_proof_checked_in_the_browser(page, auth_daemon, rec):
    d = auth_daemon
    open_entry(page, d, rec, "cam/front")
    head = d.json("GET", f"/log/{rec}/cam/front")
    assert page.inner_text("[data-fact='tree-size']") == str(head["tree_size"])
    assert page.inner_text("[data-fact='root-hash']") == head["root_hash"]
    page.locator("#record-table tr[data-ts='13000000'] button").click()
    page.locator("#verify").click()
    result = page.locator("#proof-result.ok, #proof-result.error")
    result.wait_for()
    assert result.inner_text().startswith("Inclusion verified: record 13 is in the log of 20 records")
    shot(page, "console-proof")

    # A proof whose audit path is altered in transit must not verify.
    def tamper(route):
        response = route.fetch()
        proof = response.json()
        proof["audit_path"][0] = "00" * 32
        route.fulfill(response=response, body=json.dumps(proof))

    page.route("**/api/v1/log/**proof=*", tamper)
    page.locator("#verify").click()
    page.get_by_text("Inclusion check FAILED").wait_for()
    page.unroute("**/api/v1/log/**proof=*")
    # And a record whose content no longer matches its leaf is caught too.
    page.route("**/cam/front?ts=13000000",
               lambda route: route.fulfill(status=200, body=b"forged", headers={"content-type": "application/json"})
               if route.request.method == "GET" else route.continue_())
    page.locator("#verify").click()
    page.get_by_text("No logged record has this content at this timestamp").wait_for()
