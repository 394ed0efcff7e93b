"""The servers page /hub/servers in Debian's Chromium (Playwright), and who may see it.

Real hub, real servers, numbers from the engine through the hub's scan.
Saves docs/_static/screenshots/servers-page.png.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
from pathlib import Path

import pytest
import requests

from hubctl import CHROMIUM, launch_chromium, run_in, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.browser]

SHOTS = Path(__file__).resolve().parent.parent / "docs" / "_static" / "screenshots"
MIB = 1024 * 1024
UNITS = {"B": 1, "KiB": 1024, "MiB": MIB, "GiB": 1024 * MIB, "TiB": 1024**4}

CONFIG = """
c.UsageConfig.scan_interval = 3
c.UsageConfig.volume_scan_interval = 10
c.UsageConfig.large_volume_bytes = 10 * 1024 * 1024
"""


def parse_size(text: str) -> float:
    number, unit = text.split()
    return float(number) * UNITS[unit]


def usage_api(hub, token: str | None, session: requests.Session | None = None):
    s = session or requests.Session()
    headers = {"Authorization": f"token {token}"} if token else {}
    return s.get(f"{hub.url}/hub/api/usage/servers", headers=headers, timeout=30)


def test_servers_page_shows_running_servers_and_who_holds_the_disk(make_hub):
    if not shutil.which(CHROMIUM):
        pytest.skip("Debian's chromium is not installed at /usr/bin/chromium")
    from playwright.sync_api import expect, sync_playwright

    hub = make_hub(CONFIG)
    hub.create_user("admin")
    admin_token = hub.token_for("admin")
    hub.spawn("alice")
    hub.spawn("bob")
    code, out = run_in(hub.container("alice"), "head -c 52428800 /dev/zero > ~/big.bin && sync")
    assert code == 0, out
    # carol leaves 20 MiB behind and stops: she belongs in "who holds the disk"
    hub.spawn("carol")
    code, out = run_in(hub.container("carol"), "head -c 20971520 /dev/zero > ~/old.bin && sync")
    assert code == 0, out
    hub.stop_server("carol")

    def scanned() -> dict | None:
        body = usage_api(hub, admin_token).json()
        rows = {s["user"]: s for s in body["servers"]}
        if set(rows) != {"alice", "bob"}:
            return None
        if not all((s["memory_bytes"] or 0) > 0 for s in rows.values()):
            return None
        if (rows["alice"]["volumes"].get("home") or 0) < 50 * MIB:
            return None
        if not body["stopped_with_large_volumes"]:
            return None
        return body

    body = wait_for(scanned, timeout=90, interval=1, what="a scan with both servers")
    assert [u["user"] for u in body["stopped_with_large_volumes"]] == ["carol"]
    assert body["totals"]["servers"] == 2 and body["totals"]["host_memory_bytes"] > 0

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 700})
            page.set_default_timeout(30_000)
            page.goto(f"{hub.url}/hub/login?next=%2Fhub%2Fhome")
            page.fill("#username_input", "admin")
            page.fill("#password_input", "any-password")
            page.click("#login_submit")
            page.wait_for_url(re.compile(r"/hub/home$"))
            page.click("#jhext-nav-servers")  # the nav link admins get
            page.wait_for_url(re.compile(r"/hub/servers$"))
            page.locator('#servers-body tr[data-user="bob"]').wait_for()
            expect(page.locator("#servers-body tr")).to_have_count(2)

            headers = page.locator("#servers-head th").all_inner_texts()
            mem_col = next(i for i, h in enumerate(headers) if h.startswith("Memory"))
            home_col = next(i for i, h in enumerate(headers) if h.startswith("Volume home"))
            for user in ("alice", "bob"):
                cells = page.locator(f'#servers-body tr[data-user="{user}"] td').all_inner_texts()
                assert parse_size(cells[mem_col]) > 0
            alice = page.locator('#servers-body tr[data-user="alice"] td').all_inner_texts()
            assert parse_size(alice[home_col]) >= 50 * MIB
            total = page.locator("#servers-total").inner_text()
            assert "Total: 2 servers" in total and "no limits committed, host" in total
            expect(page.locator("#stopped-body tr")).to_have_count(1)
            assert page.locator("#stopped-body td").first.inner_text() == "carol"

            # sorting by memory, then filtering
            page.locator("#servers-head th", has_text="Memory").click()
            users = page.locator("#servers-body tr").evaluate_all(
                "rows => rows.map(r => r.dataset.user)"
            )
            mem = {u: r["memory_bytes"] for u, r in ((s["user"], s) for s in body["servers"])}
            assert sorted(users) == ["alice", "bob"]
            page.fill("#servers-filter", "bob")
            expect(page.locator("#servers-body tr")).to_have_count(1)
            page.fill("#servers-filter", "")
            expect(page.locator("#servers-body tr")).to_have_count(2)
            assert mem  # both measured

            # the CSV is the table: read both in one go (a refresh cannot come between)
            snap = page.evaluate(
                """() => ({
                    csv: window.jhextServersCsv(),
                    head: [...document.querySelectorAll('#servers-head th')].map(
                        th => th.textContent.replace(/ [\\u25b2\\u25bc]$/, '')),
                    rows: [...document.querySelectorAll('#servers-body tr')].map(
                        tr => [...tr.children].map(td => td.textContent)),
                })"""
            )
            table = list(csv.reader(io.StringIO(snap["csv"])))
            assert table[0] == snap["head"]
            assert len(table) - 1 == len(snap["rows"]) == 2
            for csv_row, shown in zip(table[1:], snap["rows"], strict=True):
                assert csv_row[:3] == shown[:3]  # user, server, image
                for col in (mem_col, home_col):
                    exact, text = int(csv_row[col]), shown[col]
                    unit = UNITS[text.split()[1]]
                    assert abs(exact - parse_size(text)) <= 0.05 * unit, (exact, text)
            with page.expect_download() as dl:
                page.click("#servers-csv")
            downloaded = Path(dl.value.path()).read_text()
            assert downloaded.splitlines()[0] == snap["csv"].splitlines()[0]
            assert len(downloaded.splitlines()) == 3

            page.locator("#servers-updated").wait_for()
            page.screenshot(path=str(SHOTS / "servers-page.png"), full_page=True)

            # a plain user: no nav link, a 403 page
            other = browser.new_page()
            other.goto(f"{hub.url}/hub/login?next=%2Fhub%2Fhome")
            other.fill("#username_input", "bob")
            other.fill("#password_input", "any-password")
            other.click("#login_submit")
            other.wait_for_url(re.compile(r"/hub/home$"))
            assert other.locator("#jhext-nav-servers").count() == 0
            resp = other.goto(f"{hub.url}/hub/servers")
            assert resp.status == 403
            assert "alice" not in other.content()
        finally:
            browser.close()


def test_only_the_read_usage_scope_sees_usage(make_hub):
    hub = make_hub(CONFIG)
    for name in ("admin", "bob", "helpdesk"):
        hub.create_user(name)

    # attacker: a plain user, by cookie and by her own full token
    bob = hub.login("bob")
    r = bob.get(f"{hub.url}/hub/servers", timeout=30)
    assert r.status_code == 403
    r = usage_api(hub, None, session=bob)
    assert r.status_code == 403
    assert usage_api(hub, hub.token_for("bob")).status_code == 403
    # a token of the admin narrowed to other scopes
    narrow = hub.token_for("admin", scopes=["read:users", "read:servers", "read:metrics"])
    r = usage_api(hub, narrow)
    assert r.status_code == 403 and "read-usage" in r.json()["message"]
    # no credentials at all
    assert usage_api(hub, None).status_code == 403
    # the admin's own token works; so does a token narrowed to exactly this scope
    assert usage_api(hub, hub.token_for("admin")).status_code == 200
    only = hub.token_for("admin", scopes=["custom:jupyterhub-ext:read-usage"])
    r = usage_api(hub, only)
    assert r.status_code == 200 and "servers" in r.json()

    # delegation: a helpdesk user gets it through the group, and nothing more
    assert usage_api(hub, hub.token_for("helpdesk")).status_code == 403
    hub.api(
        "POST", "/groups/jupyterhub-ext-usage-readers/users", json={"users": ["helpdesk"]}
    ).raise_for_status()
    helpdesk = hub.token_for("helpdesk")
    assert usage_api(hub, helpdesk).status_code == 200
    s = hub.login("helpdesk")
    assert s.get(f"{hub.url}/hub/servers", timeout=30).status_code == 200
    # read-usage is not an action on servers
    r = requests.post(
        f"{hub.url}/hub/api/users/bob/restart-server",
        headers={"Authorization": f"token {helpdesk}"},
        timeout=30,
    )
    assert r.status_code in (403, 404)  # JupyterHub hides users the token cannot see
    r = requests.get(
        f"{hub.url}/hub/api/notifications/active-servers",
        headers={"Authorization": f"token {helpdesk}"},
        timeout=30,
    )
    assert r.status_code == 403
