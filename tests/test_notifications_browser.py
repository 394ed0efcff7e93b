"""Real browser: the admin sends from /hub/notifications, a user's open JupyterLab shows it.

Playwright for Python driving Debian's Chromium. Saves the screenshots used by
docs/features/notifications.md.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from hubctl import CHROMIUM, ROOT, Hub, launch_chromium

pytestmark = [pytest.mark.docker, pytest.mark.browser]

SHOTS = ROOT / "docs" / "_static" / "screenshots"
DOC_MESSAGE = "Maintenance at 18:00: please save your work. The hub is back by 18:30."
# Markup in a message must be shown as text and never run, anywhere.
MESSAGE = (
    '<img src=x onerror="window.__jhextPwned=1"><script>window.__jhextPwned=2</script>'
    " Maintenance at 18:00, please save your work"
)


def login(page, hub: Hub, name: str) -> None:
    page.goto(f"{hub.url}/hub/login")
    page.fill("#username_input", name)
    page.fill("#password_input", "any-password")
    page.click("#login_submit")
    page.wait_for_load_state()


def test_admin_sends_from_page_and_open_lab_shows_toast(make_hub):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    hub = make_hub()
    hub.create_user("admin")
    hub.spawn("alice")
    SHOTS.mkdir(parents=True, exist_ok=True)

    with sync_api.sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            # alice works in JupyterLab; its notification stream is connected
            lab = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
            sockets: list[str] = []
            lab.on("websocket", lambda ws: sockets.append(ws.url))
            login(lab, hub, "alice")
            lab.goto(f"{hub.url}/user/alice/lab", timeout=120_000)
            lab.wait_for_selector("#jp-main-dock-panel", timeout=180_000)
            deadline = time.monotonic() + 90
            while not any("notifications-extension/stream" in u for u in sockets):
                assert time.monotonic() < deadline, f"no notification stream; sockets: {sockets}"
                lab.wait_for_timeout(500)

            # the admin composes on the page
            page = browser.new_context(viewport={"width": 1280, "height": 1000}).new_page()
            login(page, hub, "admin")
            page.goto(f"{hub.url}/hub/notifications")
            nav = page.locator("#jhext-nav-notifications")
            assert nav.get_attribute("href") == "/hub/notifications"
            page.wait_for_selector("#notify-servers .notify-server")  # active list loaded
            assert page.locator("#notify-active-count").inner_text() == "1"
            assert page.locator("#notify-max").inner_text() == "140"

            page.fill("#notify-message", "x" * 141)  # over the limit: counted, cannot send
            assert page.locator("#notify-count").inner_text() == "141"
            assert page.locator("#notify-send").is_disabled()
            page.fill("#notify-message", DOC_MESSAGE)
            assert page.locator("#notify-count").inner_text() == str(len(DOC_MESSAGE))
            assert page.locator("#notify-send").is_enabled()
            page.select_option("#notify-variant", "warning")
            page.check("#notify-sticky")  # stays until dismissed
            assert page.locator("#notify-autoclose").is_disabled()
            page.check("#notify-server-0")  # alice, chosen from the active list
            assert page.locator("#notify-to-chosen").is_checked()
            page.click("#notify-send")

            row = page.locator('#notify-results-body tr[data-username="alice"]')
            row.wait_for(timeout=60_000)
            assert row.locator("td").nth(2).inner_text() == "delivered"
            assert page.locator("#notify-summary").inner_text() == "1 of 1 delivered, 0 failed."
            history = page.locator("#notify-history-body tr").first
            history.locator(".notify-history-message").wait_for()
            assert history.locator(".notify-history-message").inner_text() == DOC_MESSAGE
            assert history.locator("td").nth(4).inner_text() == "alice"
            page.screenshot(path=str(SHOTS / "notifications-page.png"), full_page=True)

            # alice's open tab shows it at once (pushed, not the 30 s poll)
            toast = lab.get_by_text(DOC_MESSAGE).first
            toast.wait_for(timeout=20_000)
            news = lab.get_by_role("button", name="No", exact=True)  # JupyterLab's news prompt
            if news.count():
                news.first.click()
            lab.wait_for_timeout(500)
            assert toast.is_visible()
            lab.screenshot(path=str(SHOTS / "notifications-toast.png"))

            # markup is text everywhere: page, history, toast; nothing runs
            page.check("#notify-to-all")
            page.select_option("#notify-variant", "error")
            page.fill("#notify-message", MESSAGE)
            assert page.locator("#notify-count").inner_text() == str(len(MESSAGE))
            page.click("#notify-send")
            page.wait_for_function(
                "document.querySelector('#notify-history-body .notify-history-message')"
                ".textContent.startsWith('<img')"
            )
            first = page.locator("#notify-history-body .notify-history-message").first
            assert first.inner_text() == MESSAGE
            assert page.locator("#jhext-notifications img").count() == 0
            assert page.locator("#jhext-notifications script").count() == 0
            toast = lab.get_by_text("Maintenance at 18:00, please save your work").first
            toast.wait_for(timeout=20_000)
            assert "<script>window.__jhextPwned=2</script>" in toast.inner_text()
            lab.wait_for_timeout(1000)  # give a broken renderer time to run the handler
            lab.screenshot(path=str(SHOTS / "notifications-markup-as-text.png"))
            assert lab.evaluate("window.__jhextPwned") is None
            assert page.evaluate("window.__jhextPwned") is None
        finally:
            browser.close()
