"""GPU detection and device requests against real Docker engines and real hubs.

This host has no GPU. A second, private dockerd started with
``--add-runtime nvidia=<runc>`` reports an ``nvidia`` runtime exactly as a GPU
host does; it cannot start a GPU container either (there is no NVIDIA device
driver), so spawns that ask for GPUs fail at container start. What Docker
recorded for the created container (HostConfig.DeviceRequests) is read with
``docker inspect``: the hubs here run with ``remove = False`` so the failed
container stays for inspection.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

import docker
import pytest

from hubctl import launch_chromium
from jupyterhub_ext import gpu
from jupyterhub_ext.engine import dockerpool

pytestmark = pytest.mark.docker

TINY_IMAGE = "jhext-test-tiny:1"


class PrivateEngine:
    """A throw-away dockerd with its own data root, exec root, socket and pidfile."""

    def __init__(self, extra_args: list[str]) -> None:
        # short path: the managed containerd's socket lives under exec-root
        self.root = Path(tempfile.mkdtemp(prefix="jhx-gpu-", dir="/tmp"))
        self.sock = self.root / "docker.sock"
        self.url = f"unix://{self.sock}"
        self.pidfile = self.root / "dockerd.pid"
        self.log = self.root / "dockerd.log"
        self.args = [
            "dockerd",
            "--data-root", str(self.root / "data"),
            "--exec-root", str(self.root / "exec"),
            "--host", self.url,
            "--pidfile", str(self.pidfile),
            "--iptables=false",
            "--ip-forward=false",
            "--bridge=none",
            "--log-level=warn",
            *extra_args,
        ]  # fmt: skip
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> docker.APIClient:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                self.args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dockerd exited:\n{self.log.read_text()[-2000:]}")
            try:
                client = docker.APIClient(base_url=self.url, version="auto", timeout=30)
                client.ping()
                return client
            except Exception:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"dockerd did not answer:\n{self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        # dockerd leaves its network-namespace mount behind; unmount before removing
        mounts = [
            line.split()[1]
            for line in Path("/proc/mounts").read_text().splitlines()
            if line.split()[1].startswith(str(self.root))
        ]
        for target in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", target], check=False)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def nvidia_engine(docker_engine):
    """A second dockerd that reports an ``nvidia`` runtime (runc under that name)."""
    runc = shutil.which("runc")
    if os.geteuid() != 0 or not shutil.which("dockerd") or not runc:
        pytest.skip("needs root, dockerd and runc to start a private engine")
    engine = PrivateEngine([f"--add-runtime=nvidia={runc}"])
    client = engine.start()
    try:
        # the smallest possible image: a spawn that asks for GPUs fails at start
        # on this host anyway, before anything in the image would run
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo("hello.txt")
            info.size = 3
            tar.addfile(info, io.BytesIO(b"hi\n"))
        repo, tag = TINY_IMAGE.split(":")
        client.import_image_from_data(
            buf.getvalue(), repository=repo, tag=tag, changes=['CMD ["jupyterhub-singleuser"]']
        )
        yield engine, client
    finally:
        client.close()
        engine.stop()


@pytest.fixture(autouse=True)
def engine_without_leftovers(request):
    """Each test starts on a private engine with no container on it, and leaves none.

    The hubs here keep failed servers (remove = False) and make_hub's clean-up
    works on the shared engine only, so a container an earlier test left on
    the private engine would otherwise stay until the module ends.
    """
    if "nvidia_engine" not in request.fixturenames:
        yield
        return
    _, client = request.getfixturevalue("nvidia_engine")
    left = [c["Names"] for c in client.containers(all=True)]
    assert not left, f"containers of an earlier test on the private engine: {left}"
    yield
    for c in client.containers(all=True):  # after make_hub stopped this test's hubs
        client.remove_container(c["Id"], force=True)


def progress_failure(hub, name: str, timeout: float = 60) -> str:
    """The failure message the spawn page shows (the progress event stream)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not hub.user(name).get("pending"):
            break
        time.sleep(0.2)
    r = hub.api("GET", f"/users/{name}/server/progress", stream=True)
    assert r.status_code == 200, r.text
    for line in r.iter_lines(decode_unicode=True):
        if line.startswith("data:"):
            event = json.loads(line[5:])
            if event.get("failed"):
                r.close()
                return event["message"]
    raise AssertionError(f"no failed event for {name}")


def start_expecting_failure(hub, name: str) -> tuple[int, str]:
    hub.create_user(name)
    r = hub.api("POST", f"/users/{name}/server", json={})
    if r.status_code == 202:  # slow: the failure comes later
        return r.status_code, progress_failure(hub, name)
    return r.status_code, r.json()["message"]


def inspect_server(client: docker.APIClient, hub, name: str) -> dict:
    found = client.containers(
        all=True,
        filters={"label": [f"jupyterhub-ext.owner-name={name}"], "name": hub.prefix},
    )
    assert len(found) == 1, found
    return client.inspect_container(found[0]["Id"])


def device_requests_of(attrs: dict) -> list[tuple]:
    """HostConfig.DeviceRequests as Docker recorded them: (driver, count, ids, capabilities).

    Engines differ in writing an empty list as [] or null; both mean "none".
    """
    return [
        (r["Driver"], r["Count"], r["DeviceIDs"] or [], r["Capabilities"] or [])
        for r in attrs["HostConfig"]["DeviceRequests"] or []
    ]


def env_of(attrs: dict) -> dict[str, str]:
    return dict(e.split("=", 1) for e in attrs["Config"]["Env"])


def audit_line(hub, name: str) -> str:
    lines = [
        ln for ln in hub.log_text().splitlines() if f'action="spawn-grants" target="{name}"' in ln
    ]
    assert len(lines) == 1, lines
    return lines[0]


def no_engine_events(client: docker.APIClient, since: float, until: float) -> list:
    return list(client.events(since=f"{since:.6f}", until=f"{until:.6f}", decode=True))


async def test_auto_detection_asks_the_engine_report_and_caches(nvidia_engine, docker_client):
    engine, nv_client = nvidia_engine
    main_client = docker_client.api

    t0 = time.time()
    nv = gpu.info_check(nv_client)
    assert (nv.available, nv.via) == (True, gpu.VIA_RUNTIME)
    assert "nvidia" in nv.runtimes and "'nvidia' runtime" in nv.detail
    plain = gpu.info_check(main_client)
    assert not plain.available and "nvidia" not in plain.runtimes
    assert "reports no GPU support" in plain.detail
    # an engine-report check is one API call: milliseconds, no container, no pull
    assert nv.elapsed_ms < 1000 and plain.elapsed_ms < 1000, (nv.elapsed_ms, plain.elapsed_ms)
    await asyncio.sleep(1.1)
    assert no_engine_events(nv_client, t0, time.time()) == []

    # the detector keeps one answer per engine for the interval
    detector = gpu.GpuDetector()
    keys = [gpu.engine_key(nv_client), gpu.engine_key(main_client)]
    assert keys[0] != keys[1]

    def run(fn):
        return dockerpool.run(fn)

    first = await detector.report(keys[0], lambda: gpu.info_check(nv_client), 300, run)
    again = await detector.report(keys[0], lambda: gpu.info_check(nv_client), 300, run)
    assert first.available and again is first
    other = await detector.report(keys[1], lambda: gpu.info_check(main_client), 300, run)
    assert not other.available
    fresh = await detector.report(keys[0], lambda: gpu.info_check(nv_client), 0, run)
    assert fresh is not first and fresh.checked_at > first.checked_at


def test_probe_check_never_pulls_and_removes_its_container(docker_client, images, run_prefix):
    api = docker_client.api
    absent = "jhext-test-absent/cuda:never-pulled"
    r = gpu.probe_check(api, absent, name_prefix=run_prefix)
    assert not r.available and r.source == "probe"
    assert "is not on the engine (it is never pulled)" in r.detail
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(absent)

    # a present image: on this GPU-less host the engine refuses the GPU request
    r = gpu.probe_check(api, images[1], ["true"], timeout=30, name_prefix=run_prefix)
    assert not r.available
    assert "GPU probe refused" in r.detail and "could not select device driver" in r.detail
    left = api.containers(all=True, filters={"label": gpu.LABEL_GPU_PROBE, "name": run_prefix})
    assert left == []


def test_auto_turns_gpus_on_where_the_engine_has_an_nvidia_runtime(make_hub, nvidia_engine):
    engine, nv_client = nvidia_engine
    hub = make_hub(
        f"""
c.DockerSpawner.client_kwargs = {{"base_url": "{engine.url}"}}
c.DockerSpawner.image = "{TINY_IMAGE}"
c.DockerSpawner.remove = False
c.ExtDockerSpawner.gpu_mode = "auto"
"""
    )
    status, message = start_expecting_failure(hub, "gpu-auto")
    assert status in (202, 500)
    assert "GPU auto-detection found them" in message, message
    assert "could not select device driver" in message
    assert "gpu_mode = 'off'" in message and "gpu_probe_image" in message
    assert "auto-detection found them" in progress_failure(hub, "gpu-auto")

    attrs = inspect_server(nv_client, hub, "gpu-auto")
    assert device_requests_of(attrs) == [("", -1, [], [["gpu", "compute", "utility"]])]
    env = env_of(attrs)
    assert env["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert env["NVIDIA_DRIVER_CAPABILITIES"] == "compute,utility"
    assert "gpu all GPUs (auto: the engine has the 'nvidia' runtime)" in audit_line(hub, "gpu-auto")


def test_auto_leaves_gpus_off_where_the_engine_has_none(make_hub, docker_client):
    hub = make_hub('c.ExtDockerSpawner.gpu_mode = "auto"\n')
    hub.spawn("no-gpu")
    attrs = docker_client.api.inspect_container(hub.container("no-gpu").id)
    assert device_requests_of(attrs) == []
    assert env_of(attrs)["NVIDIA_VISIBLE_DEVICES"] == "void"
    assert "gpu off (auto: the engine reports no GPU support" in audit_line(hub, "no-gpu")


GPU_ON = """
from docker.types import DeviceRequest
c.DockerSpawner.remove = False
c.ExtDockerSpawner.gpu_mode = "on"
c.ExtDockerSpawner.gpu_groups = ["gpu-users", "gpu-two", "gpu-ids"]
c.Spawner.group_overrides = {
    "10-two": {"groups": ["gpu-two"], "spawner_override": {"gpu_count": 2}},
    "20-ids": {
        "groups": ["gpu-ids"],
        "spawner_override": {"gpu_device_ids": ["0", "2"], "gpu_capabilities": ["utility"]},
    },
    # an admin's own device request for one group: merged with ours, not replaced
    "30-fpga": {
        "groups": ["fpga"],
        "spawner_override": {
            "extra_host_config": {
                "device_requests": [DeviceRequest(driver="cdi", device_ids=["example.com/fpga=0"])]
            }
        },
    },
}
"""


def test_gpu_on_records_device_requests_and_fails_with_a_clear_message(make_hub, docker_client):
    hub = make_hub(GPU_ON)
    members = {"ann": ["gpu-users", "fpga"], "ben": ["gpu-two"], "cat": ["gpu-ids"]}
    for group in ("fpga",):
        hub.api("POST", f"/groups/{group}", json={}).raise_for_status()
    for user, groups in members.items():
        hub.create_user(user)
        for group in groups:
            r = hub.api("POST", f"/groups/{group}/users", json={"users": [user]})
            assert r.status_code == 200, r.text

    for user in members:
        status, message = start_expecting_failure(hub, user)
        assert status in (202, 500), (status, message)
        assert "This server asks for GPUs (gpu_mode is 'on')" in message, message
        assert "cannot provide them: could not select device driver" in message
        assert "The engine reports runtimes" in message
        assert "gpu_mode = 'auto'" in message and "NVIDIA Container Toolkit" in message
        assert "asks for GPUs" in progress_failure(hub, user)

    api = docker_client.api
    ann, ben, cat = (inspect_server(api, hub, u) for u in members)
    assert device_requests_of(ann) == [
        ("", -1, [], [["gpu", "compute", "utility"]]),  # all GPUs
        ("cdi", 0, ["example.com/fpga=0"], []),  # the admin's, kept
    ]
    assert device_requests_of(ben) == [("", 2, [], [["gpu", "compute", "utility"]])]
    assert device_requests_of(cat) == [("", 0, ["0", "2"], [["gpu", "utility"]])]
    assert env_of(ann)["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert env_of(ben)["NVIDIA_VISIBLE_DEVICES"] == "0,1"
    assert env_of(cat)["NVIDIA_VISIBLE_DEVICES"] == "0,2"
    assert env_of(cat)["NVIDIA_DRIVER_CAPABILITIES"] == "utility"
    assert "gpu 2 GPU(s) (gpu_mode is on" in audit_line(hub, "ben")
    assert 'gpu_groups=["gpu-two"]' in audit_line(hub, "ben")

    # not in gpu_groups: no GPUs asked for, and the server starts
    hub.spawn("dan")
    dan = api.inspect_container(hub.container("dan").id)
    assert device_requests_of(dan) == []
    assert env_of(dan)["NVIDIA_VISIBLE_DEVICES"] == "void"
    assert "gpu off (not in gpu_groups gpu-users, gpu-two, gpu-ids)" in audit_line(hub, "dan")

    # the spawn page shows the message to the user
    spawn_page_message = browser_spawn_message(hub, "ann")
    assert "This server asks for GPUs (gpu_mode is 'on')" in spawn_page_message
    assert "gpu_mode = 'auto'" in spawn_page_message


def browser_spawn_message(hub, name: str) -> str:
    pw = pytest.importorskip("playwright.sync_api")
    with pw.sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page()
            page.goto(f"{hub.url}/hub/login")
            page.fill("#username_input", name)
            page.fill("#password_input", "any-password")
            page.click("#login_submit")
            page.wait_for_url("**/hub/**")
            # a fresh start from the browser. A failure within the hub's
            # slow_spawn_timeout is rendered by the spawn page itself; a later
            # one arrives on spawn-pending through the progress stream.
            page.goto(f"{hub.url}/hub/spawn/{name}")
            page.wait_for_function(
                "document.body.innerText.includes('asks for GPUs')", timeout=60_000
            )
            return page.inner_text("body")
        finally:
            browser.close()
