"""Idle culling with a warning: real hub, real server, real JupyterLab in Debian's Chromium.

60 s timeout, 30 s warning: the open JupyterLab tab shows the warning toast,
the home page shows the note with Keep running; clicking it keeps the server
past the original deadline; left alone it is culled, with an audit line and a
note on the home page. And the attacker side: another user can neither keep
alice's server running nor learn of it, and the delivery credentials of the
warning are gone once it is delivered.
Saves docs/_static/screenshots/culling-lab-toast.png, culling-home-warning.png,
culling-home-culled.png.
"""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from hubctl import CHROMIUM, ROOT, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.browser]

SHOTS = ROOT / "docs" / "_static" / "screenshots"
TIMEOUT, WARNING, EXTENSION = 60, 30, 30
CONFIG = f"""
c.CullerConfig.enabled = True
c.CullerConfig.timeout = {TIMEOUT}
c.CullerConfig.warning = {WARNING}
c.CullerConfig.extension = {EXTENSION}
c.CullerConfig.max_extensions = 1
c.CullerConfig.interval = 2
"""


def login(page, hub, name: str) -> None:
    page.goto(f"{hub.url}/hub/login")
    page.fill("#username_input", name)
    page.fill("#password_input", "any-password")
    page.click("#login_submit")
    page.wait_for_load_state()


def call(hub, method: str, path: str, token: str) -> requests.Response:
    return requests.request(
        method, f"{hub.url}/hub/api{path}", headers={"Authorization": f"token {token}"}, timeout=30
    )


def notifier_tokens(hub) -> int:
    db = sqlite3.connect(hub.workdir / "jupyterhub.sqlite")
    try:
        return db.execute(
            "SELECT count(*) FROM api_tokens JOIN services ON api_tokens.service_id = services.id "
            "WHERE services.name = 'jupyterhub-ext-notifier'"
        ).fetchone()[0]
    finally:
        db.close()


def test_warning_keep_running_and_cull(make_hub):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    from hubctl import launch_chromium

    hub = make_hub(CONFIG)
    hub.spawn("alice")
    hub.create_user("mallory")
    alice = hub.token_for("alice")
    mallory = hub.token_for("mallory")
    SHOTS.mkdir(parents=True, exist_ok=True)

    # the attacker: mallory cannot keep alice's server, nor see its deadline
    for method in ("POST", "GET"):
        for path in ("/users/alice/keep-running", "/users/alice/servers/x/keep-running"):
            r = call(hub, method, path, mallory)
            assert r.status_code in (403, 404), (method, path, r.status_code, r.text)
            assert "deadline" not in r.text
    # nor stop it through the route (it has no such verb)
    assert call(hub, "DELETE", "/users/alice/keep-running", mallory).status_code in (403, 404, 405)
    assert hub.server("alice")["ready"]
    assert 'action="keep-running" actor="mallory"' not in hub.log_text()  # nothing was extended

    with sync_api.sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            lab = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
            sockets: list[str] = []
            lab.on("websocket", lambda ws: sockets.append(ws.url))
            login(lab, hub, "alice")
            lab.goto(f"{hub.url}/user/alice/lab", timeout=120_000)
            lab.wait_for_selector("#jp-main-dock-panel", timeout=180_000)
            wait_for(
                lambda: any("notifications-extension/stream" in u for u in sockets),
                timeout=90,
                what="notification stream",
            )
            # the clock starts now: alice's server reports her last activity
            # (what the server's own activity reports do), so the lab's load
            # time does not eat into the test's 60 s
            t0 = time.time()
            r = requests.post(
                f"{hub.url}/hub/api/users/alice/activity",
                headers={"Authorization": f"token {alice}"},
                json={
                    "servers": {
                        "": {"last_activity": datetime.now(UTC).isoformat().replace("+00:00", "Z")}
                    }
                },
                timeout=30,
            )
            assert r.status_code in (200, 204), r.text
            state = call(hub, "GET", "/users/alice/keep-running", alice).json()
            first_deadline = state["servers"][""]["deadline"]
            assert abs(first_deadline - (t0 + TIMEOUT)) < 5, state
            assert not state["servers"][""]["warned"]

            # the warning toast in the open lab, about 30 s before the deadline
            toast = lab.get_by_text("for inactivity").first
            toast.wait_for(timeout=(WARNING + 20) * 1000)
            warned_at = time.time() - t0
            assert WARNING - 5 <= warned_at < TIMEOUT, warned_at
            assert "Keep running" in toast.inner_text()
            news = lab.get_by_role("button", name="No", exact=True)  # JupyterLab's news prompt
            if news.count():
                news.first.click()
            lab.wait_for_timeout(300)
            lab.screenshot(path=str(SHOTS / "culling-lab-toast.png"))
            # one delivery credential, used and deleted
            assert notifier_tokens(hub) == 0
            assert 'action="cull-warning"' in hub.log_text()
            lab.context.close()  # alice leaves: nothing keeps the server busy

            home = browser.new_context(viewport={"width": 1100, "height": 700}).new_page()
            login(home, hub, "alice")
            home.goto(f"{hub.url}/hub/home")
            note = home.locator('#jhext-culling .jhext-cull-warning[data-server-name=""]')
            note.wait_for()
            assert "for inactivity" in note.inner_text()
            home.screenshot(path=str(SHOTS / "culling-home-warning.png"), full_page=True)
            note.get_by_role("button", name="Keep running").click()
            kept = home.locator("#jhext-culling .alert-success")
            kept.wait_for()
            assert kept.inner_text().startswith("Kept running.")
            assert time.time() < first_deadline, "pressed too late to prove anything"

            # the one extension is used: the API says so, with a 409
            r = call(hub, "POST", "/users/alice/keep-running", alice)
            assert r.status_code == 409, r.text
            assert "most allowed" in r.json()["message"]

            # a server she does not have: a clear 4xx, nothing extended
            r = call(hub, "POST", "/users/alice/servers/nope/keep-running", alice)
            assert r.status_code in (400, 404) and r.json()["message"], r.text

            # still up after the original deadline
            time.sleep(max(0, first_deadline + 8 - time.time()))
            assert hub.server("alice")["ready"]
            assert 'action="cull-server"' not in hub.log_text()

            # left alone: culled at the extended deadline
            hub.wait_stopped("alice", timeout=EXTENSION + 30)
            culled_after = time.time() - t0
            assert culled_after >= TIMEOUT + EXTENSION - 2, culled_after
            log = hub.log_text()
            assert 'action="cull-server"' in log and 'target="alice"' in log
            assert 'actor="service:jupyterhub-ext-culler"' in log

            # a stopped server cannot be kept running: 400
            r = call(hub, "POST", "/users/alice/keep-running", alice)
            assert r.status_code == 400 and "not running" in r.json()["message"]

            # the next visit says why
            home.goto(f"{hub.url}/hub/home")
            culled = home.locator('#jhext-culling .jhext-culled[data-server-name=""]')
            culled.wait_for()
            assert "without activity" in culled.inner_text()
            home.screenshot(path=str(SHOTS / "culling-home-culled.png"), full_page=True)
            # mallory does not see alice's note
            assert "culled" not in call(hub, "GET", "/users/alice/keep-running", mallory).text
        finally:
            browser.close()
