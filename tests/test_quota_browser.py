"""Volume quotas with a real hub, real servers, real JupyterLab in Debian's Chromium.

Past the soft limit: a warning on the home page and one toast in the open
JupyterLab; past the hard limit with ``refuse``: the next start is refused with
the message; after a reset the server starts again.
Saves docs/_static/screenshots/quota-home-warning.png and quota-lab-toast.png.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from hubctl import CHROMIUM, ROOT, HubError, launch_chromium, run_in, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.browser]

SHOTS = ROOT / "docs" / "_static" / "screenshots"
CONFIG = """
c.UsageConfig.scan_interval = 2
c.UsageConfig.volume_scan_interval = 10
c.ExtDockerSpawner.volume_set = {{
    "home": {{
        "name": "{p}-{{username}}-home",
        "mount": "/home/jovyan",
        "soft_limit": "30M",
        "hard_limit": "60MB",
        "on_hard_limit": "refuse",
    }},
}}
"""


def login(page, hub, name: str) -> None:
    page.goto(f"{hub.url}/hub/login")
    page.fill("#username_input", name)
    page.fill("#password_input", "any-password")
    page.click("#login_submit")
    page.wait_for_load_state()


def quota_state(hub, token: str) -> dict:
    r = requests.get(
        f"{hub.url}/hub/api/users/alice/manage-volumes",
        headers={"Authorization": f"token {token}"},
        timeout=30,
    )
    r.raise_for_status()
    return r.json()["quota"]["home"]


def test_soft_warning_toast_hard_refusal_and_reset(make_hub):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    hub = make_hub(start=False)
    hub.config_file.write_text(
        hub.config_file.read_text().replace("jupyterhub_ext.setup(c)", "")
        + CONFIG.format(p=hub.prefix)
        + "\njupyterhub_ext.setup(c)\n"
    )
    hub.start()
    hub.spawn("alice")
    token = hub.token_for("alice")
    assert quota_state(hub, token)["state"] == "ok"
    SHOTS.mkdir(parents=True, exist_ok=True)

    with sync_api.sync_playwright() as p:
        browser = launch_chromium(p)
        try:
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

            # past the soft limit (30 MB)
            code, out = run_in(
                hub.container("alice"), "head -c 40000000 /dev/zero > ~/results.bin && sync"
            )
            assert code == 0, out
            state = wait_for(
                lambda: (q := quota_state(hub, token))["state"] == "soft" and q,
                timeout=60,
                interval=1,
                what="soft state",
            )
            assert state["size"] >= 40_000_000 and not state["refuses_start"]
            assert "over its soft limit of 30.0 MB" in state["message"]

            toast = lab.get_by_text("over its soft limit").first
            toast.wait_for(timeout=30_000)
            news = lab.get_by_role("button", name="No", exact=True)  # JupyterLab's news prompt
            if news.count():
                news.first.click()
            lab.wait_for_timeout(500)
            lab.screenshot(path=str(SHOTS / "quota-lab-toast.png"))

            home = browser.new_context(viewport={"width": 1100, "height": 700}).new_page()
            login(home, hub, "alice")
            home.goto(f"{hub.url}/hub/home")
            alert = home.locator('#jhext-quota-warnings .alert[data-volume="home"]')
            alert.wait_for()
            assert alert.get_attribute("data-state") == "soft"
            assert "over its soft limit" in alert.inner_text()
            home.screenshot(path=str(SHOTS / "quota-home-warning.png"), full_page=True)

            # a second scan of the same state does not notify again (once per crossing)
            scans = hub.log_text().count('action="volume-quota"')
            assert scans == 1
        finally:
            browser.close()

    # past the hard limit (60 MB) with refuse: the next start is refused
    code, out = run_in(hub.container("alice"), "head -c 30000000 /dev/zero > ~/more.bin && sync")
    assert code == 0, out
    wait_for(
        lambda: quota_state(hub, token)["state"] == "hard",
        timeout=60,
        interval=1,
        what="hard state",
    )
    assert quota_state(hub, token)["refuses_start"]
    hub.stop_server("alice")
    r = hub.api("POST", "/users/alice/server")
    if r.status_code in (201, 202):
        with pytest.raises(HubError):
            hub.wait_ready("alice", timeout=60)
        text = hub.log_text()
    else:
        text = r.text
    assert "your server cannot start until it is smaller" in text, r.text
    assert "Reset the home volume" in text
    assert 'reason="quota"' in hub.log_text()
    assert hub.container("alice") is None  # nothing was created

    # the way out the message names: reset the volume, then it starts
    r = requests.delete(
        f"{hub.url}/hub/api/users/alice/manage-volumes",
        headers={"Authorization": f"token {token}"},
        json={"volumes": ["home"]},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    assert quota_state(hub, token)["state"] == "ok"
    hub.spawn("alice")
    code, out = run_in(hub.container("alice"), "ls ~")
    assert code == 0 and "results.bin" not in out
