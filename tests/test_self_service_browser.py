"""The home page's Restart and Manage volumes, driven in Debian's Chromium (Playwright).

Saves screenshots for the docs in docs/_static/screenshots/.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from hubctl import CHROMIUM, launch_chromium, run_in

pytestmark = [pytest.mark.docker, pytest.mark.browser]

SHOTS = Path(__file__).resolve().parent.parent / "docs" / "_static" / "screenshots"

CONFIG = """
c.JupyterHub.allow_named_servers = True
# answer a restart as soon as the new spawn is under way: the page follows it
c.JupyterHub.tornado_settings = {{"slow_spawn_timeout": 0}}
c.ExtDockerSpawner.volume_set = {{
    "home": {{"name": "{p}-{{username}}-home", "mount": "/home/jovyan",
              "description": "Your home directory: notebooks, settings, installed packages."}},
    "cache": {{"name": "{p}-{{username}}-cache", "mount": "/home/jovyan/.cache",
               "description": "Caches (pip, conda, ...). Safe to reset."}},
    "datasets": {{"name": "{p}-datasets", "mount": "/srv/datasets", "scope": "shared",
                  "read_only": True, "description": "Shared datasets"}},
}}
"""


@pytest.fixture(scope="module")
def playwright_browser():
    if not shutil.which(CHROMIUM):
        pytest.skip("Debian's chromium is not installed at /usr/bin/chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_chromium(p)
        yield browser
        browser.close()


def test_restart_and_reset_home_in_the_browser(make_hub, playwright_browser):
    from playwright.sync_api import expect

    hub = make_hub(start=False)
    hub.config_file.write_text(
        hub.config_file.read_text().replace("jupyterhub_ext.setup(c)", "")
        + CONFIG.format(p=hub.prefix)
        + "\njupyterhub_ext.setup(c)\n"
    )
    hub.start()
    hub.spawn("alice")
    hub.api("PUT", "/users/alice/servers/lab").raise_for_status()  # a stopped named server
    first = hub.container("alice")
    assert run_in(first, "echo precious > ~/before.txt")[0] == 0
    SHOTS.mkdir(parents=True, exist_ok=True)

    page = playwright_browser.new_page(viewport={"width": 1100, "height": 760})
    js_dialogs: list[str] = []
    page.on("dialog", lambda d: (js_dialogs.append(d.message), d.dismiss()))
    page.set_default_timeout(30_000)

    # log in (DummyAuthenticator) straight to the home page
    page.goto(f"{hub.url}/hub/login?next=%2Fhub%2Fhome")
    page.fill("#username_input", "alice")
    page.fill("#password_input", "any-password")
    page.click("#login_submit")
    page.wait_for_url(re.compile(r"/hub/home$"))

    restart = page.get_by_role("button", name="Restart My Server", exact=True)
    manage = page.get_by_role("button", name="Manage Volumes", exact=True)
    expect(restart).to_be_visible()
    expect(manage).to_be_hidden()  # only while stopped
    # a plain user's nav bar offers none of the admins' pages
    expect(page.locator("#jhext-nav-rename")).to_have_count(0)
    expect(page.locator("#jhext-nav-notifications")).to_have_count(0)

    # named-server rows get the same actions, labelled for screen readers
    row = page.locator('tr.home-server-row[data-server-name="lab"]')
    expect(row.get_by_role("button", name="Manage volumes of server lab")).to_be_visible()
    expect(row.get_by_role("button", name="Restart server lab")).to_be_hidden()

    page.screenshot(path=str(SHOTS / "self-service-home-running.png"))

    # -- restart: confirm, progress in the page, the server comes back ------
    restart.click()
    dialog = page.get_by_role("dialog", name="Restart server")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("button", name="Restart", exact=True)).to_be_focused()
    page.keyboard.press("Enter")
    expect(dialog).to_be_hidden()
    status = page.locator("#jhext-status")
    # 202: stopped, new spawn pending; the page follows it until ready
    expect(status).to_contain_text("Your server stopped; it is starting again", timeout=60_000)
    page.screenshot(path=str(SHOTS / "self-service-restart-progress.png"))
    expect(status).to_contain_text("restarted and is ready", timeout=180_000)
    expect(status.get_by_role("link", name="Open it")).to_have_attribute("href", "/user/alice/")
    page.screenshot(path=str(SHOTS / "self-service-restarted.png"))
    assert hub.server("alice")["ready"]
    second = hub.container("alice")
    assert second.id != first.id
    assert run_in(second, "cat ~/before.txt") == (0, "precious\n")  # restart keeps files

    # -- stop with the stock button: Manage volumes appears -------------------
    page.get_by_role("button", name="Stop My Server").click()
    expect(manage).to_be_visible(timeout=120_000)
    expect(restart).to_be_hidden()
    expect(page.locator("#jhext-status")).to_have_text("")  # no stale "ready, open it"
    hub.wait_stopped("alice")
    page.screenshot(path=str(SHOTS / "self-service-home-stopped.png"))

    # -- manage volumes: choose home with the keyboard, confirm, outcome ------
    manage.click()
    vdialog = page.get_by_role("dialog", name="Manage volumes of your server")
    expect(vdialog).to_be_visible()
    home_box = vdialog.get_by_role("checkbox", name=re.compile(r"^home"))
    cache_box = vdialog.get_by_role("checkbox", name=re.compile(r"^cache"))
    expect(home_box).to_be_focused()  # focus moves into the list when it is loaded
    expect(vdialog.get_by_role("checkbox")).to_have_count(2)  # the shared one is not offered
    expect(vdialog).to_contain_text("Always kept: datasets (/srv/datasets, shared)")
    expect(vdialog).to_contain_text("Your home directory: notebooks")
    next_btn = vdialog.get_by_role("button", name="Reset selected…")
    expect(next_btn).to_be_disabled()
    page.keyboard.press("Space")
    expect(home_box).to_be_checked()
    expect(cache_box).not_to_be_checked()
    expect(next_btn).to_be_enabled()
    # sizes are shown (or said to be unknown), never an empty cell
    expect(vdialog.locator(".jhext-size").first).to_have_text(
        re.compile(r"^(\d+(\.\d)? [kMGT]?B|size not known yet)$")
    )
    page.screenshot(path=str(SHOTS / "self-service-volumes-dialog.png"))

    next_btn.focus()
    page.keyboard.press("Enter")
    confirm = vdialog.get_by_role("button", name="Yes, delete their contents")
    expect(confirm).to_be_visible()
    expect(vdialog.get_by_role("alert")).to_contain_text("permanently deletes everything in")
    expect(vdialog.get_by_role("alert")).to_contain_text("home (/home/jovyan")
    expect(vdialog.get_by_role("alert")).not_to_contain_text("cache")
    page.screenshot(path=str(SHOTS / "self-service-volumes-confirm.png"))
    confirm.click()

    result = vdialog.locator('.jhext-result[data-key="home"]')
    expect(result).to_have_attribute("data-status", "reset", timeout=60_000)
    expect(vdialog.locator("#jhext-outcome-summary")).to_contain_text("Reset home")
    expect(status).to_contain_text("Reset home")
    page.screenshot(path=str(SHOTS / "self-service-volumes-outcome.png"))
    vdialog.get_by_role("button", name="Close", exact=True).last.click()
    expect(vdialog).to_be_hidden()

    # the named row's dialog lists that server's volumes too
    row.get_by_role("button", name="Manage volumes of server lab").click()
    ldialog = page.get_by_role("dialog", name="Manage volumes of server “lab”")
    expect(ldialog.get_by_role("checkbox", name=re.compile(r"^home"))).to_be_focused()
    page.keyboard.press("Escape")
    expect(ldialog).to_be_hidden()

    assert js_dialogs == [], f"the page used alert/confirm: {js_dialogs}"
    page.close()

    # -- start again: home is fresh, the file written before is gone ----------
    hub.spawn("alice")
    code, out = run_in(hub.container("alice"), "ls -A ~; test -e ~/before.txt")
    assert code != 0, f"before.txt survived the reset: {out}"
