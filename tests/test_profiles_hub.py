"""Spawn profiles through a real hub, real Docker containers (the shared test engine).

The API: a forbidden profile 403, an unknown slug 400 listing the valid ones,
extra keys refused, the chosen profile on the container (docker inspect), a
restart keeping it, a named server keeping its own, an admin-started server
getting the user's default, and the grants API (self yes, someone else no).
"""

from __future__ import annotations

import re

import pytest
import requests

from hubctl import HubError

pytestmark = pytest.mark.docker

MiB = 1024 * 1024

PROFILES = """
c.JupyterHub.allow_named_servers = True
c.JupyterHub.load_groups = {{"gpu": {{"users": ["gina"]}}, "big": {{"users": ["bob"]}}}}
c.ExtDockerSpawner.profiles = [
    {{"slug": "small", "display_name": "Small", "description": "For notebooks and teaching.",
      "cpu_limit": 0.5, "mem_limit": "600M", "default": True}},
    {{"slug": "large", "display_name": "Large", "description": "More memory and CPU.",
      "image": "{plain}", "cpu_limit": 1.5, "mem_limit": "1G", "mem_guarantee": "256M",
      "environment": {{"PROFILE_NAME": "large"}}}},
    {{"slug": "gpu", "display_name": "1 GPU", "description": "One GPU of its own.",
      "gpus": 1, "groups": ["gpu"]}},
    {{"slug": "big-default", "display_name": "Big", "mem_limit": "700M", "groups": ["big"]}},
]
"""


def profile_hub(make_hub, images, extra: str = ""):
    hub = make_hub(start=False)
    hub.config_file.write_text(
        hub.config_file.read_text().replace("jupyterhub_ext.setup(c)", "")
        + PROFILES.format(plain=images[1])
        + extra
        + "\njupyterhub_ext.setup(c)\n"
    )
    return hub.start()


def as_user(hub, name: str) -> requests.Session:
    s = requests.Session()
    s.headers["Authorization"] = f"token {hub.token_for(name)}"
    return s


def inspect(hub, name: str, server: str = "") -> dict:
    c = hub.container(name, server)
    assert c is not None, f"no container for {name}/{server}"
    c.reload()
    return c.attrs


def env_of(attrs: dict) -> dict[str, str]:
    return dict(e.split("=", 1) for e in attrs["Config"]["Env"])


def cpu_of(attrs: dict) -> float:
    hc = attrs["HostConfig"]
    return hc["NanoCpus"] / 1e9 if hc.get("NanoCpus") else hc["CpuQuota"] / hc["CpuPeriod"]


def test_profiles_api_choose_refuse_restart_named_and_admin_default(make_hub, images):
    hub = profile_hub(make_hub, images)
    for name in ("alice", "bob", "gina"):
        hub.create_user(name)
    alice = as_user(hub, "alice")
    url = f"{hub.url}/hub/api/users/alice/server"

    # attacker: a profile outside her groups
    r = alice.post(url, json={"profile": "gpu"}, timeout=30)
    assert r.status_code == 403, r.text
    assert "gpu" in r.json()["message"] and "small, large" in r.json()["message"]
    # an unknown slug: 400 listing hers (not the ones she may not see)
    r = alice.post(url, json={"profile": "huge"}, timeout=30)
    assert r.status_code == 400, r.text
    msg = r.json()["message"]
    assert "Unknown profile 'huge'" in msg and "small, large" in msg and "big-default" not in msg
    # attacker: setting what a profile decides, beside a valid profile
    r = alice.post(
        url, json={"profile": "small", "image": "debian:12", "mem_limit": "8G"}, timeout=30
    )
    assert r.status_code == 403, r.text
    assert "image, mem_limit" in r.json()["message"]
    assert hub.container("alice") is None
    # a refused choice is not remembered for the next plain start
    assert hub.user("alice")["servers"] == {} or not hub.server("alice")

    # her choice, on the container
    r = alice.post(url, json={"profile": "large"}, timeout=30)
    assert r.status_code in (201, 202), r.text
    hub.wait_ready("alice")
    attrs = inspect(hub, "alice")
    assert attrs["Config"]["Image"] == images[1]
    assert attrs["HostConfig"]["Memory"] == 1024 * MiB
    assert attrs["HostConfig"]["MemoryReservation"] == 256 * MiB
    assert cpu_of(attrs) == pytest.approx(1.5)
    assert env_of(attrs)["PROFILE_NAME"] == "large"
    assert attrs["Config"]["Labels"]["jupyterhub-ext.profile"] == "large"

    # a restart keeps it
    r = alice.post(f"{hub.url}/hub/api/users/alice/restart-server", timeout=120)
    assert r.status_code in (200, 202), r.text
    hub.wait_ready("alice")
    again = inspect(hub, "alice")
    assert again["Id"] != attrs["Id"]
    assert again["Config"]["Image"] == images[1]
    assert again["HostConfig"]["Memory"] == 1024 * MiB

    # a named server keeps its own profile; the default server keeps large
    r = alice.post(f"{hub.url}/hub/api/users/alice/servers/two", json={"profile": "small"})
    assert r.status_code in (201, 202), r.text
    hub.wait_ready("alice", "two")
    two = inspect(hub, "alice", "two")
    assert two["HostConfig"]["Memory"] == 600 * MiB
    assert cpu_of(two) == pytest.approx(0.5)
    assert two["Config"]["Image"] == hub.image
    assert inspect(hub, "alice")["HostConfig"]["Memory"] == 1024 * MiB

    # an admin (the test's admin service) starts bob's server without options:
    # bob's default (the first one his group allows him, since none is marked
    # for him other than small... small is marked default and open to all)
    hub.api("POST", "/users/bob/server", json={}).raise_for_status()
    hub.wait_ready("bob")
    bob = inspect(hub, "bob")
    assert bob["Config"]["Labels"]["jupyterhub-ext.profile"] == "small"
    assert bob["HostConfig"]["Memory"] == 600 * MiB

    # what do I get? self: yes, with the profile and groups
    r = alice.get(f"{hub.url}/hub/api/users/alice/grants", timeout=30)
    assert r.status_code == 200, r.text
    data = r.json()
    assert [p["slug"] for p in data["profiles"]] == ["small", "large"]
    servers = {s["name"]: s for s in data["servers"]}
    assert servers[""]["profile"]["slug"] == "large" and servers[""]["running"]
    assert servers[""]["mem_limit"] == 1024 * MiB and servers[""]["source"] == "container"
    assert servers["two"]["profile"]["slug"] == "small"
    assert servers[""]["docker_sock"] is False and servers[""]["privileged"] is False
    # attacker: someone else's grants (JupyterHub answers 404 for resources out of
    # scope, so the answer does not even say whether gina exists)
    r = alice.get(f"{hub.url}/hub/api/users/gina/grants", timeout=30)
    assert r.status_code == 404, r.text
    assert "gpu" not in r.text
    # gina sees the GPU profile and which group gave it
    r = hub.api("GET", "/users/gina/grants")
    gpu = [p for p in r.json()["profiles"] if p["slug"] == "gpu"]
    assert gpu and gpu[0]["granted_by"] == ["gpu"]


def test_profiles_form_post_applies_only_the_slug(make_hub, images):
    """The spawn page's form: no JavaScript; extra form fields never reach the spawner."""
    hub = profile_hub(make_hub, images)
    hub.create_user("alice")
    s = hub.login("alice")
    page = s.get(f"{hub.url}/hub/spawn", timeout=30)
    assert page.status_code == 200
    assert 'value="small"' in page.text and 'value="large"' in page.text
    assert 'value="gpu"' not in page.text
    # default preselected
    tags = {
        m.group(1): m.group(0)
        for m in re.finditer(r'<input[^>]*value="([a-z-]+)"[^>]*>', page.text)
    }
    assert "checked" in tags["small"] and "checked" not in tags["large"]
    # an admin opening gina's spawn page sees gina's profiles (her group's GPU one), not his own
    hub.create_user("gina")
    admin = hub.login("admin")
    theirs = admin.get(f"{hub.url}/hub/spawn/gina", timeout=30)
    assert theirs.status_code == 200
    assert 'value="gpu"' in theirs.text and 'value="small"' in theirs.text
    r = s.post(
        f"{hub.url}/hub/spawn",
        data={"profile": "large", "image": "debian:12", "_xsrf": s.cookies.get("_xsrf")},
        timeout=120,
    )
    assert r.status_code == 200, r.text[:500]
    hub.wait_ready("alice")
    attrs = inspect(hub, "alice")
    assert attrs["Config"]["Image"] == images[1]
    assert attrs["HostConfig"]["Memory"] == 1024 * MiB


def test_bad_profiles_stop_the_hub_with_the_entry_named(make_hub, images):
    hub = make_hub(start=False)
    hub.config_file.write_text(
        hub.config_file.read_text().replace("jupyterhub_ext.setup(c)", "")
        + 'c.ExtDockerSpawner.profiles = [{"slug": "a"}, {"slug": "b", '
        '"image": "jhext-no-such-image:404"}]\n' + "jupyterhub_ext.setup(c)\n"
    )
    with pytest.raises(HubError) as e:
        hub.start()
    assert "profile 'b' (image 'jhext-no-such-image:404'): image not present" in str(e.value)


def test_admission_check_refuses_with_numbers(make_hub, images, docker_client):
    total = docker_client.info()["MemTotal"]
    # leave room for exactly one 'large' (256M guaranteed) server
    reserve = total - 300 * MiB
    hub = profile_hub(
        make_hub, images, f"\nc.ExtDockerSpawner.admission_memory_reserve = {reserve}\n"
    )
    hub.spawn("alice", options={"profile": "large"})
    hub.create_user("bob")
    r = hub.api("POST", "/users/bob/server", json={"profile": "large"})
    assert r.status_code == 503, r.text
    msg = r.json()["message"]
    assert "Not enough memory" in msg and "256 MiB guaranteed" in msg, msg
    assert "running servers hold 256 MiB" in msg and "in reserve" in msg, msg
    assert hub.container("bob") is None
    # a profile without a guarantee is not counted
    hub.spawn("bob", options={"profile": "small"})
