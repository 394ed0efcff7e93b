"""A free GPU for each GPU server, on an engine where GPU containers really start.

A private dockerd whose PATH holds a stand-in ``nvidia-container-runtime-hook``
(``cat >/dev/null; exit 0``) registers Docker's ``nvidia`` device driver, so
containers with GPU ``device_requests`` start (see ../shared/reference.md);
the devices they were given are read back from ``HostConfig.DeviceRequests``.
Real hubs spawn real single-user servers there (host network, so the hub on
127.0.0.1 reaches them).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import docker
import pytest
import requests
from test_gpu_engine import PrivateEngine

pytestmark = pytest.mark.docker

DEVICES = ["GPU-aaaa", "GPU-bbbb", "GPU-cccc", "GPU-dddd"]
HOOK = "#!/bin/sh\ncat >/dev/null\nexit 0\n"


@pytest.fixture(scope="module")
def gpu_engine(docker_engine, images, tmp_path_factory):
    """A private dockerd with the stand-in hook on its PATH and the lab image loaded."""
    if os.geteuid() != 0 or not shutil.which("dockerd"):
        pytest.skip("needs root and dockerd to start a private engine")
    bindir = tmp_path_factory.mktemp("hook")
    hook = bindir / "nvidia-container-runtime-hook"
    hook.write_text(HOOK)
    hook.chmod(0o755)
    engine = PrivateEngine([])
    old_path = os.environ["PATH"]
    os.environ["PATH"] = f"{bindir}:{old_path}"
    try:
        client = engine.start()
    finally:
        os.environ["PATH"] = old_path
    try:
        save = subprocess.Popen(
            ["/usr/bin/docker", "-H", docker_engine, "save", images[0]], stdout=subprocess.PIPE
        )
        subprocess.run(
            ["/usr/bin/docker", "-H", engine.url, "load", "-q"],
            stdin=save.stdout,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        assert save.wait() == 0
        yield engine, client
    finally:
        client.close()
        engine.stop()


@pytest.fixture(autouse=True)
def engine_without_leftovers(request):
    """Each test starts on an engine where no container holds a GPU, and leaves none.

    The private engine is this module's alone. Its hubs keep their servers on
    stop (cleanup_servers = False) and make_hub's clean-up works on the shared
    engine, so a server an earlier test left running here would still count
    in the placement (fewer free GPUs, spawns refused that should not be).
    """
    if "gpu_engine" not in request.fixturenames:
        yield
        return
    _, client = request.getfixturevalue("gpu_engine")
    live = [c["Names"] for c in client.containers(all=True) if c["State"] in ("created", "running")]
    assert not live, f"containers of an earlier test hold GPUs on the private engine: {live}"
    yield
    for c in client.containers(all=True):  # after make_hub stopped this test's hubs
        client.remove_container(c["Id"], force=True)


def gpu_hub(make_hub, engine, extra: str = ""):
    hub = make_hub(start=False)
    hub.config_file.write_text(
        hub.config_file.read_text().replace("jupyterhub_ext.setup(c)", "")
        + f"""
c.JupyterHub.cleanup_servers = False
c.DockerSpawner.client_kwargs = {{"base_url": "{engine.url}"}}
c.ExtDockerSpawner.gpu_devices = {DEVICES!r}
c.ExtDockerSpawner.profiles = [
    {{"slug": "gpu", "display_name": "1 GPU", "gpus": 1, "default": True}},
    {{"slug": "cpu", "display_name": "CPU only", "cpu_limit": 1}},
]
"""
        + extra
        + "\njupyterhub_ext.setup(c)\n"
    )
    return hub.start()


def devices_by_user(client, prefix: str) -> dict[str, list[str]]:
    """Every live container of this hub: owner -> the device IDs Docker recorded."""
    out = {}
    for c in client.containers(all=True, filters={"name": prefix}):
        attrs = client.inspect_container(c["Id"])
        if attrs["State"]["Status"] not in ("created", "running"):
            continue
        owner = attrs["Config"]["Labels"]["jupyterhub-ext.owner-name"]
        out[owner] = [
            d for r in attrs["HostConfig"]["DeviceRequests"] or [] for d in r["DeviceIDs"] or []
        ]
    return out


def spawn_all(hub, names: list[str]) -> dict[str, int]:
    """POST all spawns at once; name -> status."""
    for n in names:
        hub.create_user(n)

    def one(name: str) -> int:
        r = requests.post(
            f"{hub.url}/hub/api/users/{name}/server",
            headers={"Authorization": f"token {hub.token}"},
            json={},
            timeout=300,
        )
        return r.status_code

    with ThreadPoolExecutor(len(names)) as pool:
        return dict(zip(names, pool.map(one, names), strict=True))


def test_each_gpu_server_gets_a_free_gpu_and_a_restart_keeps_it(make_hub, gpu_engine):
    engine, client = gpu_engine
    hub = gpu_hub(make_hub, engine)
    names = ["u1", "u2", "u3", "u4"]
    statuses = spawn_all(hub, names)
    assert all(s in (201, 202) for s in statuses.values()), statuses
    for n in names:
        hub.wait_ready(n, timeout=180)
    held = devices_by_user(client, hub.prefix)
    assert sorted(d for n in names for d in held[n]) == DEVICES, held
    assert all(len(held[n]) == 1 for n in names)
    # inside: the runtime was told exactly that device
    for n in names:
        c = client.containers(filters={"label": f"jupyterhub-ext.owner-name={n}"})[0]
        env = dict(e.split("=", 1) for e in client.inspect_container(c["Id"])["Config"]["Env"])
        assert env["NVIDIA_VISIBLE_DEVICES"] == held[n][0]

    # a 5th is refused at once, offering the CPU profile
    hub.create_user("u5")
    t0 = time.monotonic()
    r = hub.api("POST", "/users/u5/server", json={})
    assert r.status_code == 503, r.text
    assert time.monotonic() - t0 < 10
    msg = r.json()["message"]
    assert "No free GPU" in msg and "4 of the 4 GPUs" in msg and "CPU only (cpu)" in msg, msg
    # ... and can take the CPU profile
    r = hub.api("POST", "/users/u5/server", json={"profile": "cpu"})
    assert r.status_code in (201, 202), r.text
    hub.wait_ready("u5", timeout=180)
    assert devices_by_user(client, hub.prefix)["u5"] == []

    # stopping one frees its GPU for the next
    freed = held["u2"]
    hub.stop_server("u2")
    hub.create_user("u6")
    r = hub.api("POST", "/users/u6/server", json={})
    assert r.status_code in (201, 202), r.text
    hub.wait_ready("u6", timeout=180)
    after = devices_by_user(client, hub.prefix)
    assert after["u6"] == freed

    # hub restart (servers keep running): the allocation is read back unchanged
    hub.stop()
    hub.start()
    assert devices_by_user(client, hub.prefix) == after
    r = hub.api("GET", "/users/u6/grants")
    assert r.status_code == 200, r.text
    assert r.json()["servers"][0]["gpu_devices"] == freed
    hub.create_user("u7")
    r = hub.api("POST", "/users/u7/server", json={})
    assert r.status_code == 503 and "No free GPU" in r.json()["message"], r.text

    # the decision's cost (benchmark row in docs/performance.md)
    ms = [float(m) for m in re.findall(r"decided in ([0-9.]+) ms", hub.log_text())]
    assert ms and max(ms) < 100, ms
    print(f"placement decision: {len(ms)} spawns, max {max(ms):.1f} ms")
    for n in ["u1", "u3", "u4", "u5", "u6"]:
        hub.api("DELETE", f"/users/{n}/server")


def test_concurrent_spawns_never_share_a_gpu_beyond_the_policy(make_hub, gpu_engine):
    """8 spawns at once on 4 GPUs with gpu_sharing = 2: each GPU exactly twice."""
    engine, client = gpu_engine
    hub = gpu_hub(make_hub, engine, "c.ExtDockerSpawner.gpu_sharing = 2\n")
    names = [f"s{i}" for i in range(8)]
    statuses = spawn_all(hub, names)
    assert all(s in (201, 202) for s in statuses.values()), statuses
    for n in names:
        hub.wait_ready(n, timeout=240)
    held = devices_by_user(client, hub.prefix)
    flat = sorted(d for n in names for d in held[n])
    assert flat == sorted(DEVICES * 2), held
    hub.create_user("s8")
    r = hub.api("POST", "/users/s8/server", json={})
    assert r.status_code == 503 and "up to 2 servers each" in r.json()["message"], r.text
    for n in names:
        hub.api("DELETE", f"/users/{n}/server")


STRESS = """
# servers that never answer: each spawn holds its GPU for a few seconds, then fails
# and is removed. Cheap containers, so many spawns can race.
c.DockerSpawner.cmd = ["sh", "-c", "trap 'exit 0' TERM; sleep 120 & wait"]
c.Spawner.start_timeout = 4
c.Spawner.http_timeout = 3
c.JupyterHub.tornado_settings = {"slow_spawn_timeout": 0}
"""


def live_devices(client, prefix: str) -> list[list[str]]:
    out = []
    for c in client.containers(all=True, filters={"name": prefix}):
        if c["State"] not in ("created", "running"):
            continue
        try:
            attrs = client.inspect_container(c["Id"])
        except docker.errors.NotFound:  # removed since the listing
            continue
        out.append(
            [d for r in attrs["HostConfig"]["DeviceRequests"] or [] for d in r["DeviceIDs"] or []]
        )
    return out


def test_racing_spawns_never_double_allocate(make_hub, gpu_engine):
    """8 concurrent GPU spawns on 4 GPUs, 20 times: every container's device IDs read back."""
    engine, client = gpu_engine
    hub = gpu_hub(make_hub, engine, STRESS)
    names = [f"r{i}" for i in range(8)]
    for n in names:
        hub.create_user(n)
    for rep in range(20):
        statuses = spawn_all(hub, names)
        assert all(s in (201, 202, 503) for s in statuses.values()), (rep, statuses)
        seen_full = False
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            held = live_devices(client, hub.prefix)
            flat = [d for ids in held for d in ids]
            # never two live containers on one GPU, at any moment we look
            assert len(flat) == len(set(flat)), (rep, held)
            assert all(len(ids) == 1 for ids in held), (rep, held)
            seen_full = seen_full or sorted(flat) == DEVICES
            pending = [n for n in names if hub.user(n).get("pending")]
            if not pending and not held:
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"repetition {rep} did not settle: {held}")
        # all four GPUs were in use at once, and the other four spawns were refused
        assert seen_full, rep
    refused = hub.log_text().count("No free GPU")
    assert refused >= 20 * 4, refused


SLOW_CREATE = """
import asyncio
import time

from jupyterhub_ext.spawner import ExtDockerSpawner


class SlowEngineSpawner(ExtDockerSpawner):
    # The engine takes 4 s to create "slow"'s container, as a loaded engine
    # does; JupyterHub gives up on that start after 3 s and cancels it while
    # the create call goes on in its thread.
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.user.name == "slow":
            self.start_timeout = 3

    async def _create_container(self):
        if self.user.name != "slow":
            return await super()._create_container()
        kwargs = await self.container_create_kwargs()
        client = await self.docker_client()

        def create():
            time.sleep(4)
            return client.create_container(**kwargs)

        return await asyncio.get_running_loop().run_in_executor(None, create)


c.JupyterHub.spawner_class = SlowEngineSpawner
"""


def test_a_start_cancelled_during_its_create_keeps_its_gpu_until_the_container_is_gone(
    make_hub, gpu_engine
):
    """The placement lock is held until the engine has made the container, even when
    JupyterHub cancels that start (start_timeout): the next spawn sees the GPU as
    taken, and the abandoned container is removed, not left holding it."""
    engine, client = gpu_engine
    hub = gpu_hub(make_hub, engine, SLOW_CREATE)
    for n in ("slow", "fast"):
        hub.create_user(n)
    with ThreadPoolExecutor(2) as pool:
        slow = pool.submit(hub.api, "POST", "/users/slow/server", json={})
        deadline = time.monotonic() + 30
        while "Placement for slow: GPUs GPU-aaaa" not in hub.log_text():
            assert time.monotonic() < deadline, hub.log_tail()
            time.sleep(0.05)
        # slow's container is being made (1 s into the 4 s); fast waits for the lock
        fast = pool.submit(hub.api, "POST", "/users/fast/server", json={})
        watched = time.monotonic() + 12
        while time.monotonic() < watched:
            held = live_devices(client, hub.prefix)
            flat = [d for ids in held for d in ids]
            assert len(flat) == len(set(flat)), held  # never one GPU in two containers
            time.sleep(0.1)
        assert slow.result().status_code >= 400, slow.result().text
        assert fast.result().status_code in (201, 202), fast.result().text
    hub.wait_ready("fast", timeout=180)
    assert hub.user("slow")["servers"] == {}
    # the abandoned container is gone: only fast's holds a GPU
    wait_for_devices = time.monotonic() + 30
    while (held := devices_by_user(client, hub.prefix)) and "slow" in held:
        assert time.monotonic() < wait_for_devices, held
        time.sleep(0.2)
    assert list(held) == ["fast"] and len(held["fast"]) == 1, held
    assert "cancelled while the engine was creating" in hub.log_text()
    hub.api("DELETE", "/users/fast/server")
