"""DockerSpawner's documented settings, run against ExtDockerSpawner on the real engine.

An admin switches ``c.JupyterHub.spawner_class`` to ``ext-docker`` and keeps the
rest of the config: each setting below must mean what DockerSpawner's docs say
(docs/switching.md lists every option). Settings are grouped so that few
servers boot: each boot costs about 2 CPU-seconds.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import docker
import pytest
import requests

from hubctl import HubError, run_in, wait_for
from jupyterhub_ext.spawner import ExtDockerSpawner

pytestmark = pytest.mark.docker

MiB = 1024 * 1024


def inspect(container) -> dict:
    container.reload()
    return container.attrs


def mounts_by_target(attrs: dict) -> dict[str, dict]:
    return {m["Destination"]: m for m in attrs["Mounts"]}


def env_of(attrs: dict) -> dict[str, str]:
    return dict(e.split("=", 1) for e in attrs["Config"]["Env"])


# -- one hub, many settings ----------------------------------------------------------

SETTINGS = """
import asyncio
c.DockerSpawner.remove = False
c.DockerSpawner.pull_policy = "never"  # never reaches a registry: the tests stay on this host
c.DockerSpawner.allowed_images = {{"lab": "{image}", "missing": "{prefix}-missing:never"}}
c.DockerSpawner.post_start_cmd = "sh -c 'echo post-start-ran > /tmp/post_start_marker'"

def per_user_mem_limit(spawner):
    return "300M" if spawner.user.name == "alice" else "200M"

c.DockerSpawner.mem_limit = per_user_mem_limit
c.DockerSpawner.cpu_limit = lambda spawner: 0.5

async def host_config(spawner):
    await asyncio.sleep(0)
    return {{
        "pids_limit": 512,
        "cpu_period": 50000,
        "extra_hosts": {{"{{username}}.compat.test": "127.0.0.1"}},
    }}

c.DockerSpawner.extra_host_config = host_config
c.DockerSpawner.extra_create_kwargs = {{
    "command": ["tini", "--", "jupyterhub-singleuser", "--debug"],
    "labels": {{"org.example.team": "team-{{username}}"}},
    "environment": {{"FROM_CREATE_KWARGS": "hello-{{username}}"}},
    "host_config": {{"ShmSize": 268435456}},
}}
c.DockerSpawner.volumes = {{
    "{{prefix}}-{{username}}-data": "/srv/data",
    "{hostdir}": {{"bind": "/srv/hostdir", "mode": "ro"}},
}}
c.DockerSpawner.read_only_volumes = {{"{{prefix}}-shared-ro": "/srv/shared"}}
c.DockerSpawner.mounts = [
    {{"type": "volume", "source": "{{prefix}}-{{username}}-mounted", "target": "/srv/mounted"}},
]
c.DockerSpawner.port = 8888  # not used on the host network: setup(c) says so
"""


def test_docker_spawner_settings_reach_the_container(make_hub, lab_image, tmp_path):
    hostdir = tmp_path / "hostdir"
    hostdir.mkdir()
    hub = make_hub(start=False)
    hub.config_file.write_text(
        hub.config_file.read_text().replace("jupyterhub_ext.setup(c)", "")
        + SETTINGS.format(image=lab_image, prefix=hub.prefix, hostdir=hostdir)
        + "\njupyterhub_ext.setup(c)\n"
    )
    hub.start()
    hub.spawn("alice", options={"image": "lab"})
    container = hub.container("alice")
    attrs = inspect(container)
    host = attrs["HostConfig"]
    assert attrs["Config"]["Image"] == lab_image  # the image option, through allowed_images

    # extra_create_kwargs: the command replaces ours (issue 18, failure 2) ...
    assert attrs["Config"]["Cmd"] == ["tini", "--", "jupyterhub-singleuser", "--debug"]
    # ... labels and environment merge with ours, templates rendered ...
    labels = attrs["Config"]["Labels"]
    assert labels["org.example.team"] == "team-alice"
    assert labels["jupyterhub-ext.owner-name"] == "alice"
    env = env_of(attrs)
    assert env["FROM_CREATE_KWARGS"] == "hello-alice" and env["JUPYTERHUB_API_TOKEN"]
    # ... and its raw host_config reaches Docker (failure 3)
    assert host["ShmSize"] == 268435456

    # mem_limit / cpu_limit callables; cpu_period from extra_host_config (async callable)
    assert host["Memory"] == 300 * MiB
    assert (host["CpuPeriod"], host["CpuQuota"]) == (50000, 25000)
    assert host["PidsLimit"] == 512
    assert host["ExtraHosts"] == ["alice.compat.test:127.0.0.1"]

    # volumes in DockerSpawner's documented forms, next to our volume set
    m = mounts_by_target(attrs)
    assert (m["/srv/data"]["Name"], m["/srv/data"]["RW"]) == (f"{hub.prefix}-alice-data", True)
    assert (m["/srv/hostdir"]["Source"], m["/srv/hostdir"]["RW"]) == (str(hostdir), False)
    assert (m["/srv/shared"]["Name"], m["/srv/shared"]["RW"]) == (f"{hub.prefix}-shared-ro", False)
    assert m["/srv/mounted"]["Name"] == f"{hub.prefix}-alice-mounted"
    assert m["/home/jovyan"]["Name"] == f"{hub.prefix}-alice-home"

    # post_start_cmd ran in the container
    assert run_in(container, "cat /tmp/post_start_marker") == (0, "post-start-ran\n")

    # remove = False: the stopped container is kept and reused at the next start
    first_id = container.id
    assert host["AutoRemove"] is False
    hub.stop_server("alice")
    assert inspect(hub.container("alice"))["State"]["Running"] is False
    hub.spawn("alice", options={"image": "lab"})
    assert hub.container("alice").id == first_id

    # pull_policy = "never": a missing image fails at once, nothing is pulled
    hub.create_user("bob")
    r = hub.api("POST", "/users/bob/server", json={"image": "missing"})
    assert r.status_code >= 400
    assert "No such image" in hub.log_text() or "No such image" in r.text
    # allowed_images: anything else is refused with DockerSpawner's 400
    hub.create_user("carol")
    r = hub.api("POST", "/users/carol/server", json={"image": "evil/other:latest"})
    assert r.status_code == 400 and "not in allowed list" in r.text, r.text

    assert "c.DockerSpawner.port is not used with network_name = 'host'" in hub.log_text()


def test_boundary_user_options_cannot_make_a_privileged_container(make_hub):
    """extra_create_kwargs["host_config"] reaches Docker now: a user's own spawn
    options mapped onto it (apply_user_options) must not grant privileged mode."""
    hub = make_hub(
        """
c.Spawner.apply_user_options = {"create": "extra_create_kwargs"}
"""
    )
    hub.create_user("mallory")
    token = hub.token_for("mallory")
    r = requests.post(
        f"{hub.url}/hub/api/users/mallory/server",
        headers={"Authorization": f"token {token}"},
        json={"create": {"host_config": {"Privileged": True}}},
        timeout=60,
    )
    assert r.status_code == 403, r.text
    assert "may not set privileged" in r.text
    container = hub.container("mallory")
    assert container is None or not inspect(container)["HostConfig"]["Privileged"]


# -- a config copied from DockerSpawner's docs -----------------------------------------

# From DockerSpawner's "Data persistence" page (jupyterhub-dockerspawner.readthedocs.io),
# with the one line an admin changes when switching.
DOCS_CONFIG = """
c.JupyterHub.spawner_class = "ext-docker"  # was: "docker"
notebook_dir = os.environ.get('DOCKER_NOTEBOOK_DIR') or '/home/jovyan/work'
c.DockerSpawner.notebook_dir = notebook_dir
c.DockerSpawner.volumes = {{ 'jupyterhub-user-{{username}}': notebook_dir }}
c.DockerSpawner.remove = True
"""

# the same volume at /home/jovyan, through a group override: Docker's
# "Duplicate mount point" if the default volume set did not step aside
FULL_HOME = """
c.JupyterHub.load_groups = {{"full-home": {{"users": ["{user}"]}}}}
c.Spawner.group_overrides = {{
    "full-home": {{
        "groups": ["full-home"],
        "spawner_override": {{"volumes": {{"{prefix}-home-{{username}}": "/home/jovyan"}}}},
    }},
}}
"""


def test_config_from_docker_spawner_docs_spawns_unchanged(make_hub, docker_client):
    hub = make_hub(start=False)
    suffix = hub.prefix.rsplit("-", 1)[-1]
    docs_user, home_user = f"docs{suffix}", f"home{suffix}"
    base = hub.config_file.read_text().replace("jupyterhub_ext.setup(c)", "")
    hub.config_file.write_text(
        "import os\n"
        + base
        # the default volume set, as an admin who never heard of it has it
        + "\ndel c.ExtDockerSpawner['volume_set']\n"
        + DOCS_CONFIG.format()
        + FULL_HOME.format(user=home_user, prefix=hub.prefix)
        + "\njupyterhub_ext.setup(c)\n"
    )
    docs_volume = f"jupyterhub-user-{docs_user}"
    try:
        hub.start()
        hub.spawn(docs_user)
        attrs = inspect(hub.container(docs_user))
        # the docs' volume, once, where the docs put it (failure 5: it was mounted twice)
        named = [m for m in attrs["Mounts"] if m.get("Name") == docs_volume]
        assert [m["Destination"] for m in named] == ["/home/jovyan/work"]
        assert "/home/jovyan" not in mounts_by_target(attrs)
        assert env_of(attrs)["JUPYTERHUB_ROOT_DIR"] == "/home/jovyan/work"
        assert "default volume_set steps aside" in hub.log_text()

        # volumes covering home: one mount, no "Duplicate mount point" 500
        hub.spawn(home_user)
        attrs = inspect(hub.container(home_user))
        home = mounts_by_target(attrs)["/home/jovyan"]
        assert home["Name"] == f"{hub.prefix}-home-{home_user}"
        # (group_overrides merge dicts: the docs' volume stays at /home/jovyan/work)
        assert sorted(m["Destination"] for m in attrs["Mounts"]) == [
            "/home/jovyan",
            "/home/jovyan/work",
        ]

        # remove = True: stopping deletes the container, the volume stays
        hub.stop_server(docs_user)
        wait_for(lambda: hub.container(docs_user) is None, 30, what="container removed")
        docker_client.volumes.get(docs_volume)
    finally:
        hub.stop()
        try:
            docker_client.volumes.get(docs_volume).remove(force=True)
        except docker.errors.NotFound:
            pass


def test_explicit_volume_set_colliding_with_volumes_stops_the_hub_with_the_fix(make_hub):
    hub = make_hub(
        """
c.DockerSpawner.volumes = {"jupyterhub-user-{username}": "/home/jovyan"}
""",
        start=False,
    )
    with pytest.raises(HubError) as err:
        hub.start(timeout=30)
    text = str(err.value)
    assert "duplicate mount point" in text
    assert "c.ExtDockerSpawner.volume_set = {'home': {'name': 'jupyterhub-user-{username}'" in text


# -- tls_config: one client per engine and TLS settings (failure 4) -------------------------


def test_tls_config_gives_one_client_for_200_accesses(tmp_path, monkeypatch):
    for var in ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
        monkeypatch.delenv(var, raising=False)
    ca = tmp_path / "ca.pem"
    ca.write_text("not read before a connection\n")
    spawner = ExtDockerSpawner(
        tls_config={"ca_cert": str(ca), "verify": str(ca)},
        client_kwargs={"base_url": "tcp://127.0.0.1:1"},  # nothing listens: no call is made
    )
    clients = {id(spawner.client) for _ in range(200)}
    assert len(clients) == 1
    c = spawner.client
    assert c.verify == str(ca) and c.base_url == "https://127.0.0.1:1"
    # a second spawner with the same settings shares it; other TLS settings do not
    other = ExtDockerSpawner(
        tls_config={"ca_cert": str(ca), "verify": False},
        client_kwargs={"base_url": "tcp://127.0.0.1:1"},
    )
    same = ExtDockerSpawner(
        tls_config={"verify": str(ca), "ca_cert": str(ca)},
        client_kwargs={"base_url": "tcp://127.0.0.1:1"},
    )
    assert same.client is c and other.client is not c


# -- timeouts: the hub's own, as under DockerSpawner ------------------------------------


def test_slow_server_starts_under_http_timeout(make_hub):
    """Failure 1: a server needing 10 s with start_timeout = 5, http_timeout = 60."""
    hub = make_hub(
        """
c.Spawner.cmd = ["sh", "-c", "sleep 10; exec jupyterhub-singleuser"]
c.Spawner.start_timeout = 5
c.Spawner.http_timeout = 60
"""
    )
    t0 = time.monotonic()
    server = hub.spawn("slow")
    assert server["ready"] and time.monotonic() - t0 >= 10
    assert "JupyterHub waits for it (http_timeout 60" in hub.log_text()
    assert "Gave up" not in hub.log_text()


class HungEngine:
    """A unix socket that accepts connections and never answers (a hung dockerd)."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="jhext-hung-", dir="/tmp")
        self.path = os.path.join(self.dir, "docker.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(64)
        self.held: list[socket.socket] = []
        self.accepted = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)  # read nothing, answer nothing
            self.accepted.set()

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def test_hub_answers_while_the_docker_engine_hangs(make_hub):
    """Issue 12 finding 6: the client is made and its version asked in the pool, not on the loop."""
    engine = HungEngine()
    try:
        hub = make_hub(
            f"""
c.ExtDockerSpawner.client_kwargs = {{"base_url": "unix://{engine.path}"}}
c.ExtDockerSpawner.docker_connect_timeout = 8
c.JupyterHub.tornado_settings = {{"slow_spawn_timeout": 1}}
"""
        )
        hub.create_user("stuck")
        with ThreadPoolExecutor(1) as pool:
            spawn = pool.submit(hub.api, "POST", "/users/stuck/server", timeout=60)
            assert engine.accepted.wait(20), "the spawner never asked the engine"
            # the engine now holds the version request: the hub must keep answering
            slowest = 0.0
            for _ in range(10):
                t0 = time.monotonic()
                r = requests.get(f"{hub.url}/hub/api/", timeout=3)
                slowest = max(slowest, time.monotonic() - t0)
                assert r.status_code == 200
                time.sleep(0.3)
            assert slowest < 1.0, f"hub answered in {slowest:.2f}s while the engine hung"
            assert spawn.result().status_code in (202, 500)
        # the spawn fails with a message naming the engine, after the connect timeout
        wait_for(
            lambda: "did not tell its API version within 8 s" in hub.log_text(),
            40,
            what="the spawn to fail on the engine's silence",
        )
        wait_for(lambda: hub.server("stuck") is None, 30, what="the failed server to go")
    finally:
        engine.close()
