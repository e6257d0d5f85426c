"""
The console's first layer in a real browser (issue #18 item 1): the
redirect and the shell, the token login (kept in the tab's session storage,
sent as a Bearer token), server info and usage, and buckets listed with
size, record count, time range and quota, created, edited, renamed and
removed; with authentication on and off.  Every effect is checked through
the API as well as on the page.
"""

import json
import urllib.request

from tests.browser.conftest import TOKEN, shot


def test_base_redirects_to_console_and_files_are_typed(auth_daemon):
    with urllib.request.urlopen(auth_daemon.url + "/", timeout=10) as response:
        assert response.url == auth_daemon.console  # followed the 302
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        assert b'<script type="module" src="js/main.js">' in response.read()
        assert response.headers["x-reduct-api"]


def test_login_keeps_token_in_session_storage(page, auth_daemon):
    auth_daemon.json("POST", "/b/login-check", {})
    page.goto(auth_daemon.console)
    page.fill("#token", "wrong-token")
    page.click("#login button[type=submit]")
    page.get_by_text("Invalid token").wait_for()
    assert page.evaluate("sessionStorage.length") == 0
    page.fill("#token", TOKEN)
    page.click("#login button[type=submit]")
    page.locator("#buckets tr[data-bucket='login-check']").wait_for()
    assert page.inner_text("#who").startswith("Token: init-token")
    stored = page.evaluate("Object.values(sessionStorage)")
    assert stored == [TOKEN]
    # A reload keeps the tab signed in; the API calls carry the token.
    with page.expect_request(lambda r: r.url.endswith("/api/v1/list")) as listed:
        page.reload()
    assert listed.value.headers["authorization"] == "Bearer " + TOKEN
    page.locator("#buckets").wait_for()
    page.click("#logout")
    page.locator("#login").wait_for()
    assert page.evaluate("sessionStorage.length") == 0
    # A new tab (context) asks again.
    other = page.context.browser.new_context().new_page()
    other.goto(auth_daemon.console)
    other.locator("#login").wait_for()
    other.context.close()


def login(page, daemon):
    page.goto(daemon.console)
    if daemon.token:
        page.fill("#token", daemon.token)
        page.click("#login button[type=submit]")
    page.locator("#server-info").wait_for()


def test_server_info_and_bucket_figures(page, auth_daemon):
    d = auth_daemon
    d.json("POST", "/b/figures", {"quota_type": "FIFO", "quota_size": 5000000})
    for ts, entry in ((1_000_000, "cam/a"), (2_000_000, "cam/a"), (3_000_000, "cam/b")):
        status, _, _ = d.call("POST", f"/b/figures/{entry}?ts={ts}", b"x" * 100)
        assert status == 200
    login(page, d)
    info = d.json("GET", "/info")
    assert page.inner_text("#server-info [data-fact='Version']") == info["version"]
    row = page.locator("#buckets tr[data-bucket='figures']")
    assert row.locator("[data-col='records']").inner_text() == "3"
    assert row.locator("[data-col='quota']").inner_text() == "FIFO 5.0 MB"
    text = row.inner_text()
    assert "1970-01-01T00:00:01.000000Z" in text and "1970-01-01T00:00:03.000000Z" in text
    size = d.json("GET", "/b/figures")["info"]["size"]
    assert f"{size} B" in text


def test_bucket_create_edit_rename_remove(page, auth_daemon):
    d = auth_daemon
    login(page, d)
    form = page.locator("#create-bucket")
    form.locator("input[name=name]").fill("made-in-ui")
    form.locator("select[name=quota_type]").select_option("HARD")
    form.locator("input[name=quota_size]").fill("123456")
    form.locator("button[type=submit]").click()
    page.get_by_text("Bucket 'made-in-ui' created").wait_for()
    settings = d.json("GET", "/b/made-in-ui")["settings"]
    assert (settings["quota_type"], settings["quota_size"]) == ("HARD", 123456)
    # A refused name shows the server's error.
    form.locator("input[name=name]").fill("made-in-ui")
    form.locator("button[type=submit]").click()
    page.get_by_text("Bucket 'made-in-ui' already exists").wait_for()

    row = page.locator("#buckets tr[data-bucket='made-in-ui']")
    row.get_by_role("button", name="Edit").click()
    edit = page.locator("form[data-edit='made-in-ui']")
    edit.locator("select[name=quota_type]").select_option("FIFO")
    edit.locator("input[name=quota_size]").fill("777000")
    edit.locator("input[name=max_block_records]").fill("333")
    edit.get_by_role("button", name="Save").click()
    page.get_by_text("Bucket 'made-in-ui' updated").wait_for()
    settings = d.json("GET", "/b/made-in-ui")["settings"]
    assert (settings["quota_type"], settings["quota_size"], settings["max_block_records"]) == (
        "FIFO", 777000, 333)

    page.locator("#buckets tr[data-bucket='made-in-ui']").get_by_role("button", name="Rename").click()
    rename = page.locator("form[data-rename='made-in-ui']")
    rename.locator("input[name=new_name]").fill("renamed-in-ui")
    rename.get_by_role("button", name="Rename").click()
    page.get_by_text("renamed to 'renamed-in-ui'").wait_for()
    assert d.call("GET", "/b/made-in-ui")[0] == 404
    assert d.json("GET", "/b/renamed-in-ui")["settings"]["quota_size"] == 777000
    shot(page, "console-buckets")

    page.locator("#buckets tr[data-bucket='renamed-in-ui']").get_by_role("button", name="Remove").click()
    page.get_by_text("Bucket 'renamed-in-ui' removed").wait_for()
    names = [b["name"] for b in d.json("GET", "/list")["buckets"]]
    assert "renamed-in-ui" not in names
    assert page.locator("#buckets tr[data-bucket='renamed-in-ui']").count() == 0


def test_authentication_off_needs_no_token(page, open_daemon):
    d = open_daemon
    d.json("POST", "/b/open-bucket", {})
    page.goto(d.console)
    page.locator("#buckets tr[data-bucket='open-bucket']").wait_for()
    assert page.locator("#login").count() == 0
    assert "Authentication off" in page.inner_text("#who")
    with page.expect_request(lambda r: r.url.endswith("/api/v1/info")) as info:
        page.reload()
    assert "authorization" not in info.value.headers
    page.locator("#create-bucket input[name=name]").fill("open-made")
    page.locator("#create-bucket button[type=submit]").click()
    page.get_by_text("Bucket 'open-made' created").wait_for()
    assert json.loads(d.call("GET", "/b/open-made")[2])["info"]["name"] == "open-made"
