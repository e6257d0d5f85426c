"""
The console's server administration in a real browser (issue #18 item 1):
tokens (created with permissions, the value shown once, rotated, removed),
replications with their diagnostics, lifecycles, and the ``$system``
events.  Every effect is checked through the API.
"""

import json
import time

from tests.browser.conftest import shot
from tests.browser.test_console_buckets import login


def test_tokens_create_show_once_rotate_remove(page, auth_daemon):
    d = auth_daemon
    d.json("POST", "/b/tok-data", {})
    login(page, d)
    page.click("#nav a[href='#/tokens']")
    form = page.locator("#create-token")
    form.locator("input[name=name]").fill("ui-reader")
    form.locator("input[name=read]").fill("tok-data")
    form.locator("button[type=submit]").click()
    value = page.locator("#token-value")
    value.wait_for()
    first = value.inner_text()
    assert first.startswith("ui-reader-")
    token = d.json("GET", "/tokens/ui-reader")
    assert token["permissions"] == {"full_access": False, "read": ["tok-data"], "write": []}
    assert token["value"] != first  # the API never shows it again either
    status, _, body = d.call("GET", "/me", token=first)
    assert (status, json.loads(body)["name"]) == (200, "ui-reader")
    assert d.call("GET", "/b/tok-data", token=first)[0] == 200
    assert d.call("POST", "/b/tok-data/e?ts=1", b"x", token=first)[0] == 403
    row = page.locator("#tokens tr[data-token='ui-reader']")
    assert "read: tok-data" in row.inner_text()
    shot(page, "console-tokens")
    # Shown once: a fresh view of the list does not have it.
    page.reload()
    page.locator("#tokens tr[data-token='ui-reader']").wait_for()
    assert page.locator("#token-value").count() == 0
    assert first not in page.content()

    page.locator("#tokens tr[data-token='ui-reader']").get_by_role("button", name="Rotate").click()
    page.locator("#token-value").wait_for()
    second = page.inner_text("#token-value")
    assert second != first and second.startswith("ui-reader-")
    assert d.call("GET", "/me", token=first)[0] == 401
    assert d.call("GET", "/me", token=second)[0] == 200

    page.locator("#tokens tr[data-token='ui-reader']").get_by_role("button", name="Remove").click()
    page.get_by_text("Token 'ui-reader' removed").wait_for()
    assert d.call("GET", "/tokens/ui-reader")[0] == 404
    assert d.call("GET", "/me", token=second)[0] == 401
    # The provisioned init token cannot be removed from the console.
    assert "provisioned" in page.locator("#tokens tr[data-token='init-token']").inner_text()


def _wait(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out")


def test_replication_with_diagnostics(page, auth_daemon):
    d = auth_daemon
    d.json("POST", "/b/repl-src", {})
    d.json("POST", "/b/repl-dst", {})
    login(page, d)
    page.click("#nav a[href='#/replications']")
    form = page.locator("#create-replication")
    for name, value in (("name", "ui-repl"), ("src_bucket", "repl-src"), ("dst_host", d.url),
                        ("dst_bucket", "repl-dst"), ("dst_token", d.token)):
        form.locator(f"[name={name}]").fill(value)
    form.locator("[name=when]").fill('{"&keep": {"$eq": "yes"}}')
    form.locator("button[type=submit]").click()
    page.get_by_text("Replication 'ui-repl' created").wait_for()
    settings = d.json("GET", "/replications/ui-repl")["settings"]
    assert (settings["src_bucket"], settings["dst_bucket"], settings["when"]) == (
        "repl-src", "repl-dst", {"&keep": {"$eq": "yes"}})

    for ts, keep in ((1, "yes"), (2, "no"), (3, "yes")):
        assert d.call("POST", f"/b/repl-src/e?ts={ts}", b"v", {"x-reduct-label-keep": keep})[0] == 200
    _wait(lambda: d.call("GET", "/b/repl-dst/e?ts=3")[0] == 200)
    info = _wait(lambda: (lambda r: r if r["info"]["pending_records"] == 0
                          and r["diagnostics"]["hourly"]["ok"] >= 1 else None)(
        d.json("GET", "/replications/ui-repl")))
    hourly = info["diagnostics"]["hourly"]
    page.reload()
    card = page.locator(".replication[data-replication='ui-repl']")
    card.wait_for()
    assert (f"Pending records: 0. Last hour: {hourly['ok']} ok, {hourly['errored']} errored."
            in card.inner_text())
    assert "repl-src → " + d.url + " repl-dst" in card.inner_text()
    shot(page, "console-replications")

    # A refused replication shows the server's reason.
    form = page.locator("#create-replication")
    for name, value in (("name", "bad-repl"), ("src_bucket", "no-such-bucket"), ("dst_host", d.url),
                        ("dst_bucket", "repl-dst")):
        form.locator(f"[name={name}]").fill(value)
    form.locator("button[type=submit]").click()
    page.get_by_text("Source bucket 'no-such-bucket' for replication 'bad-repl' does not exist").wait_for()

    card.get_by_role("button", name="Remove").click()
    page.get_by_text("Replication 'ui-repl' removed").wait_for()
    assert d.call("GET", "/replications/ui-repl")[0] == 404


def test_lifecycle_create_mode_remove(page, auth_daemon):
    d = auth_daemon
    d.json("POST", "/b/life-data", {})
    login(page, d)
    page.click("#nav a[href='#/lifecycles']")
    form = page.locator("#create-lifecycle")
    form.locator("[name=name]").fill("ui-life")
    form.locator("[name=bucket]").fill("life-data")
    form.locator("[name=entries]").fill("cam*, logs")
    form.locator("[name=older_than]").fill("30d")
    form.locator("[name=interval]").fill("1h")
    form.locator("[name=when]").fill('{"&tmp": {"$eq": "1"}}')
    form.locator("button[type=submit]").click()
    page.get_by_text("Lifecycle 'ui-life' created").wait_for()
    settings = d.json("GET", "/lifecycles/ui-life")["settings"]
    assert {k: settings[k] for k in ("type", "bucket", "entries", "older_than", "interval", "when", "mode")} == {
        "type": "delete", "bucket": "life-data", "entries": ["cam*", "logs"], "older_than": "30d",
        "interval": "1h", "when": {"&tmp": {"$eq": "1"}}, "mode": "enabled"}
    row = page.locator("#lifecycles tr[data-lifecycle='ui-life']")
    row.locator("select").select_option("dry_run")
    page.get_by_text("Lifecycle 'ui-life' is dry_run").wait_for()
    assert d.json("GET", "/lifecycles/ui-life")["settings"]["mode"] == "dry_run"
    # The server's validation reaches the page.
    form = page.locator("#create-lifecycle")
    form.locator("[name=name]").fill("too-young")
    form.locator("[name=bucket]").fill("life-data")
    form.locator("[name=older_than]").fill("5m")
    form.locator("button[type=submit]").click()
    page.get_by_text("Lifecycle older_than '5m' is shorter than minimum allowed value of 1h").wait_for()
    shot(page, "console-lifecycles")
    page.locator("#lifecycles tr[data-lifecycle='ui-life']").get_by_role("button", name="Remove").click()
    page.get_by_text("Lifecycle 'ui-life' removed").wait_for()
    assert d.call("GET", "/lifecycles/ui-life")[0] == 404


def test_system_events(page, auth_daemon):
    d = auth_daemon
    d.json("POST", "/b/sys-touch", {})  # at least one audited request
    def written():  # the events reach $system at the daemon's next flush (it may not exist yet)
        status, _, body = d.call("GET", "/b/$system")
        return status == 200 and [e for e in json.loads(body)["entries"] if e["record_count"]]

    entries = _wait(written)
    login(page, d)
    page.click("#nav a[href='#/system']")
    streams = page.locator("[data-stream]")
    streams.first.wait_for()
    shown = [s.get_attribute("data-stream") for s in streams.all()]
    assert set(shown) <= {e["name"] for e in d.json("GET", "/b/$system")["entries"]}
    assert set(shown) >= {e["name"] for e in entries}
    rows = page.locator("[data-stream] table.events tr")
    assert rows.count() >= 1
    for text in page.locator("[data-stream] table.events td.mono").all_inner_texts()[:5]:
        json.loads(text)
    shot(page, "console-system")


def test_system_view_without_system_bucket(page, open_daemon):
    d = open_daemon
    assert d.call("GET", "/b/$system")[0] == 404
    page.goto(d.console + "#/system")
    page.locator("#no-system").wait_for()
    assert "No $system bucket" in page.inner_text("#no-system")
