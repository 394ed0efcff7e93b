"""The spawn page's profile cards and the home page's "What you get", in Debian's Chromium.

A user in group ``gpu`` sees three profiles, a user outside sees two;
choosing "Large" (keyboard, no script needed by the form) starts a container
whose ``docker inspect`` shows the profile's image, memory and CPU limits.
Saves screenshots for the docs in docs/_static/screenshots/.
"""

from __future__ import annotations

import re

import pytest
from test_profiles_hub import PROFILES, MiB, cpu_of, inspect
from test_self_service_browser import SHOTS, playwright_browser  # noqa: F401 (fixture)

pytestmark = [pytest.mark.docker, pytest.mark.browser]


def login(browser, hub, name: str):
    page = browser.new_page(viewport={"width": 1100, "height": 820})
    page.set_default_timeout(30_000)
    page.goto(f"{hub.url}/hub/login?next=%2Fhub%2Fspawn")
    page.fill("#username_input", name)
    page.fill("#password_input", "any-password")
    page.click("#login_submit")
    page.wait_for_url(re.compile(r"/hub/spawn"))
    return page


def test_profile_cards_by_group_and_choosing_large(make_hub, images, playwright_browser):  # noqa: F811
    from playwright.sync_api import expect

    hub = make_hub(start=False)
    hub.config_file.write_text(
        hub.config_file.read_text().replace("jupyterhub_ext.setup(c)", "")
        + PROFILES.format(plain=images[1])
        + "\njupyterhub_ext.setup(c)\n"
    )
    hub.start()
    hub.create_user("gina")
    hub.create_user("alice")
    SHOTS.mkdir(parents=True, exist_ok=True)

    # gina (group gpu): small, large and the GPU profile
    page = login(playwright_browser, hub, "gina")
    radios = page.get_by_role("radio")
    expect(radios).to_have_count(3)
    expect(page.get_by_role("radio", name="1 GPU")).to_be_visible()
    expect(page.get_by_role("radio", name="Small")).to_be_checked()
    page.screenshot(path=str(SHOTS / "profiles-spawn-form.png"), full_page=True)
    page.close()

    # without JavaScript the form still works: gina starts "Small" from it
    nojs = playwright_browser.new_context(java_script_enabled=False)
    page = nojs.new_page()
    page.set_default_timeout(30_000)
    page.goto(f"{hub.url}/hub/login?next=%2Fhub%2Fspawn")
    page.fill("#username_input", "gina")
    page.fill("#password_input", "any-password")
    page.click("#login_submit")
    page.wait_for_url(re.compile(r"/hub/spawn"))
    expect(page.get_by_role("radio", name="Small")).to_be_checked()
    page.get_by_role("button", name="Start").click()
    hub.wait_ready("gina", timeout=180)
    assert inspect(hub, "gina")["HostConfig"]["Memory"] == 600 * MiB
    nojs.close()

    # alice (no group): two, no GPU profile
    page = login(playwright_browser, hub, "alice")
    expect(page.get_by_role("radio")).to_have_count(2)
    expect(page.get_by_role("radio", name="1 GPU")).to_have_count(0)
    large = page.get_by_role("radio", name="Large")
    # the card says what it gives
    card = page.locator('.jhext-profile[data-slug="large"]')
    expect(card).to_contain_text("1.5 CPU")
    expect(card).to_contain_text("1 GiB memory (256 MiB guaranteed)")
    expect(card).to_contain_text(images[1])
    # keyboard: from the checked default to the next card, then submit
    page.get_by_role("radio", name="Small").focus()
    page.keyboard.press("ArrowDown")
    expect(large).to_be_checked()
    page.get_by_role("button", name="Start").click()
    hub.wait_ready("alice", timeout=180)
    attrs = inspect(hub, "alice")
    assert attrs["Config"]["Image"] == images[1]
    assert attrs["HostConfig"]["Memory"] == 1024 * MiB
    assert cpu_of(attrs) == pytest.approx(1.5)

    # the home page says what she got, read from the container
    page.goto(f"{hub.url}/hub/home")
    panel = page.get_by_role("region", name="What you get")
    expect(panel).to_be_visible()
    row = panel.locator('tr[data-server-name=""]')
    expect(row).to_contain_text("Large")
    expect(row).to_contain_text("1 GiB (256 MiB guaranteed)")
    expect(row).to_contain_text("1.5")
    expect(row).to_contain_text(images[1])
    expect(panel).to_contain_text(
        "Profiles you may choose when you start a server: Small (default), Large"
    )
    page.screenshot(path=str(SHOTS / "profiles-home-what-you-get.png"), full_page=True)
    page.close()
