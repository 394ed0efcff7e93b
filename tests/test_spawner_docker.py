"""The volume-set spawner against a real engine and a real hub (host networking)."""

from __future__ import annotations

import pytest
import requests

from hubctl import run_in

pytestmark = pytest.mark.docker

TWO_VOLUMES = """
c.ExtDockerSpawner.volume_set = {{
    "home": {{"name": "{p}-{{username}}-home", "mount": "/home/jovyan",
              "description": "Your home directory"}},
    "workspace": {{"name": "{p}-{{username}}-work", "mount": "/srv/work",
                   "description": "Project workspace", "resettable": False}},
}}
"""


def test_home_volume_persists_per_user_with_owner_labels(make_hub, docker_client):
    hub = make_hub(start=False)
    hub.config_file.write_text(
        hub.config_file.read_text().replace("jupyterhub_ext.setup(c)", "")
        + TWO_VOLUMES.format(p=hub.prefix)
        + "\njupyterhub_ext.setup(c)\n"
    )
    hub.start()
    alice = hub.spawn("alice")
    hub.spawn("bob")
    # the hub reaches each server through the proxy on loopback
    assert alice["url"] == "/user/alice/"
    ca, cb = hub.container("alice"), hub.container("bob")
    assert run_in(ca, "echo from-alice > ~/note.txt")[0] == 0
    assert run_in(cb, "echo from-bob > ~/note.txt")[0] == 0

    # bob's volumes are never mounted into alice's container, and vice versa
    def sources(c):
        c.reload()
        return {m["Destination"]: m.get("Name") for m in c.attrs["Mounts"]}

    assert sources(ca) == {
        "/home/jovyan": f"{hub.prefix}-alice-home",
        "/srv/work": f"{hub.prefix}-alice-work",
    }
    assert not any("bob" in (n or "") for n in sources(ca).values())

    hub.stop_server("alice")
    assert hub.container("alice") is None  # remove=True: a fresh container per start
    hub.spawn("alice")
    code, out = run_in(hub.container("alice"), "cat ~/note.txt")
    assert (code, out.strip()) == (0, "from-alice")

    uid = str(hub.user("alice")["id"]) if "id" in hub.user("alice") else None
    vol = docker_client.volumes.get(f"{hub.prefix}-alice-home")
    labels = vol.attrs["Labels"]
    assert labels["jupyterhub-ext.owner-name"] == "alice"
    assert labels["jupyterhub-ext.volume-key"] == "home"
    assert labels["jupyterhub-ext.description"] == "Your home directory"
    assert labels["jupyterhub-ext.owner-id"].isdigit()
    if uid:
        assert labels["jupyterhub-ext.owner-id"] == uid
    found = docker_client.volumes.list(filters={"label": "jupyterhub-ext.owner-name=bob"})
    assert {v.name for v in found} >= {f"{hub.prefix}-bob-home", f"{hub.prefix}-bob-work"}


def test_host_network_server_reachable_on_loopback(make_hub):
    hub = make_hub()
    server = hub.spawn("carol")
    c = hub.container("carol")
    c.reload()
    assert c.attrs["HostConfig"]["NetworkMode"] == "host"
    # the hub connects to the server on 127.0.0.1 at the port the spawner picked
    assert server["ready"]
    env = dict(e.split("=", 1) for e in c.attrs["Config"]["Env"])
    port = int(env["JUPYTERHUB_SERVICE_URL"].rsplit(":", 1)[1].split("/")[0])
    r = requests.get(f"http://127.0.0.1:{port}/user/carol/api", timeout=10)
    assert r.status_code == 200 and "version" in r.json()
    # and the proxy routes to it
    tok = hub.token_for("carol")
    r = requests.get(
        f"{hub.url}/user/carol/api/status", headers={"Authorization": f"token {tok}"}, timeout=10
    )
    assert r.status_code == 200


def test_bad_volume_set_stops_hub_at_start(make_hub):
    from hubctl import HubError

    hub = make_hub(
        """
c.ExtDockerSpawner.volume_set = {
    "home": {"name": "x-{username}", "mount": "/home/jovyan"},
    "cache": {"name": "y-{username}", "mount": "/home/jovyan"},
}
""",
        start=False,
    )
    with pytest.raises(HubError) as err:
        hub.start(timeout=30)
    assert "volume_set['cache']" in str(err.value)
    assert "already used by volume_set['home']" in str(err.value)


def test_server_noticed_fast_and_dead_container_fails_with_its_logs(make_hub):
    hub = make_hub(
        """
c.ExtDockerSpawner.ready_poll_interval = 0.1
c.JupyterHub.tornado_settings = {"slow_spawn_timeout": 30}
"""
    )
    hub.spawn("quick")
    assert "answered after" in hub.log_text()  # our poll saw it, not the hub's back-off

    hub.stop()
    broken = make_hub(
        """
c.ExtDockerSpawner.cmd = ["sh", "-c", "sleep 1; echo boom-marker >&2; exit 3"]
c.ExtDockerSpawner.remove = False  # keep the dead container: its logs are read
c.JupyterHub.tornado_settings = {"slow_spawn_timeout": 30}
"""
    )
    broken.create_user("crash")
    r = broken.api("POST", "/users/crash/server")
    assert r.status_code >= 400, r.text
    # the container's exit code and its last words, not "didn't respond in 90 seconds"
    log = broken.log_text()
    assert "exited with code 3 before its server answered" in log
    assert "boom-marker" in log
    assert "didn't respond" not in log
