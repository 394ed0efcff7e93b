"""GPU decisions, device requests, engine-report reading and the detection cache (pure)."""

from __future__ import annotations

import asyncio

import pytest

from jupyterhub_ext import gpu
from jupyterhub_ext.gpu import EngineGpuReport, GpuRequest

NO_GPU_INFO = {
    "Runtimes": {"runc": {"path": "runc"}, "io.containerd.runc.v2": {"path": "runc"}},
    "DefaultRuntime": "runc",
}
NVIDIA_INFO = {
    "Runtimes": {"runc": {"path": "runc"}, "nvidia": {"path": "/usr/bin/nvidia-container-runtime"}},
    "DefaultRuntime": "runc",
}
CDI_INFO = {
    "Runtimes": {"runc": {"path": "runc"}},
    "CDISpecDirs": ["/etc/cdi", "/var/run/cdi"],
    "DiscoveredDevices": [
        {"Source": "cdi", "ID": "nvidia.com/gpu=0"},
        {"Source": "cdi", "ID": "nvidia.com/gpu=all"},
    ],
}


def test_gpu_count_parsing():
    assert gpu.parse_gpu_count("all") == -1
    assert gpu.parse_gpu_count(" ALL ") == -1
    assert gpu.parse_gpu_count(2) == 2
    assert gpu.parse_gpu_count("3") == 3
    for bad in (0, -1, "some", True, 1.5, None):
        with pytest.raises(gpu.GpuConfigError, match="gpu_count must be 'all' or a positive"):
            gpu.parse_gpu_count(bad)


def test_capabilities_are_checked():
    assert gpu.check_capabilities(["Compute", "utility", ""]) == ("compute", "utility")
    with pytest.raises(gpu.GpuConfigError, match="unknown gpus"):
        gpu.check_capabilities(["compute", "gpus"])


def test_device_requests_all_count_ids():
    [all_] = gpu.device_requests(GpuRequest.from_config("all", [], ["compute", "utility"]))
    assert all_ == {
        "Driver": "",
        "Count": -1,
        "DeviceIDs": [],
        "Capabilities": [["gpu", "compute", "utility"]],
        "Options": {},
    }
    [two] = gpu.device_requests(GpuRequest.from_config(2, [], ["utility"]))
    assert (two["Count"], two["DeviceIDs"], two["Capabilities"]) == (2, [], [["gpu", "utility"]])
    # device IDs win over a count: Docker refuses both at once
    [ids] = gpu.device_requests(GpuRequest.from_config(4, ["0", "GPU-abc"], ["compute"]))
    assert (ids["Count"], ids["DeviceIDs"]) == (0, ["0", "GPU-abc"])


def test_device_requests_cdi():
    req = GpuRequest.from_config("all", [], [])
    assert gpu.device_requests(req, gpu.VIA_CDI)[0]["DeviceIDs"] == ["nvidia.com/gpu=all"]
    assert gpu.device_requests(req, gpu.VIA_CDI)[0]["Driver"] == "cdi"
    two = GpuRequest.from_config(2, [], [])
    assert gpu.device_requests(two, gpu.VIA_CDI)[0]["DeviceIDs"] == [
        "nvidia.com/gpu=0",
        "nvidia.com/gpu=1",
    ]
    ids = GpuRequest.from_config("all", ["1", "amd.com/gpu=0"], [])
    assert gpu.device_requests(ids, gpu.VIA_CDI)[0]["DeviceIDs"] == [
        "nvidia.com/gpu=1",
        "amd.com/gpu=0",
    ]


def test_environment_matches_request():
    caps = ["compute", "utility"]
    assert gpu.gpu_environment(GpuRequest.from_config("all", [], caps)) == {
        "NVIDIA_VISIBLE_DEVICES": "all",
        "NVIDIA_DRIVER_CAPABILITIES": "compute,utility",
    }
    assert gpu.gpu_environment(GpuRequest.from_config(3, [], caps))["NVIDIA_VISIBLE_DEVICES"] == (
        "0,1,2"
    )
    assert gpu.gpu_environment(GpuRequest.from_config(3, ["2", "5"], caps))[
        "NVIDIA_VISIBLE_DEVICES"
    ] == ("2,5")
    # no GPUs: hidden even on an engine whose default runtime is nvidia
    assert gpu.gpu_environment(None) == {"NVIDIA_VISIBLE_DEVICES": "void"}
    assert gpu.gpu_environment(GpuRequest(), gpu.VIA_CDI) == {}


def test_report_from_engine_info():
    r = gpu.report_from_info(NO_GPU_INFO)
    assert not r.available
    assert "io.containerd.runc.v2, runc" in r.detail and "no CDI GPU devices" in r.detail

    r = gpu.report_from_info(NVIDIA_INFO)
    assert (r.available, r.via) == (True, gpu.VIA_RUNTIME)
    assert "'nvidia' runtime" in r.detail

    r = gpu.report_from_info(CDI_INFO)
    assert (r.available, r.via) == (True, gpu.VIA_CDI)
    assert r.cdi_devices == ("nvidia.com/gpu=0", "nvidia.com/gpu=all")

    # CDI switched on but no GPU devices: not enough
    r = gpu.report_from_info({**NO_GPU_INFO, "CDISpecDirs": ["/etc/cdi"]})
    assert not r.available and "CDI enabled (/etc/cdi) but no GPU devices" in r.detail
    r = gpu.report_from_info(
        {**NO_GPU_INFO, "DiscoveredDevices": [{"Source": "cdi", "ID": "vendor.com/fpga=0"}]}
    )
    assert not r.available


def test_decide_gpu_modes_and_groups():
    req = GpuRequest.from_config("all", [], ["compute"])
    yes = gpu.report_from_info(NVIDIA_INFO)
    no = gpu.report_from_info(NO_GPU_INFO)

    off = gpu.decide_gpu("off", req, report=yes)
    assert not off.enabled and off.host_config() == {}
    assert off.environment() == {"NVIDIA_VISIBLE_DEVICES": "void"}

    auto_yes = gpu.decide_gpu("auto", req, report=yes)
    assert auto_yes.enabled and auto_yes.host_config()["device_requests"][0]["Count"] == -1
    auto_no = gpu.decide_gpu("auto", req, report=no)
    assert not auto_no.enabled and "no GPU support" in auto_no.reason

    # on: asks even when the engine's report says no (the engine decides at start)
    on = gpu.decide_gpu("on", req, report=no)
    assert on.enabled and "warning" in on.reason

    # only members of gpu_groups
    kw = dict(gpu_groups=["gpu-users", "ml"], report=yes)
    member = gpu.decide_gpu("on", req, user_groups={"ml", "x"}, **kw)
    assert member.enabled and member.granted_by == ("ml",)
    outsider = gpu.decide_gpu("auto", req, user_groups={"x"}, **kw)
    assert not outsider.enabled and "not in gpu_groups gpu-users, ml" in outsider.reason
    assert not gpu.needs_report("auto", {"x"}, ["ml"])
    assert gpu.needs_report("auto", {"ml"}, ["ml"])
    assert not gpu.needs_report("off", {"ml"}, [])

    cdi = gpu.decide_gpu("auto", req, report=gpu.report_from_info(CDI_INFO))
    assert cdi.host_config()["device_requests"][0]["Driver"] == "cdi"

    with pytest.raises(gpu.GpuConfigError):
        gpu.decide_gpu("maybe", req)


def test_start_failure_message_says_what_to_change():
    req = GpuRequest()
    no = gpu.report_from_info(NO_GPU_INFO)
    on = gpu.decide_gpu("on", req, report=no)
    err = 'could not select device driver "" with capabilities: [[gpu]]'
    msg = gpu.start_failure_message(err, on)
    assert "asks for GPUs (gpu_mode is 'on')" in msg
    assert "cannot provide them" in msg and err in msg
    assert "gpu_mode = 'auto'" in msg and "NVIDIA Container Toolkit" in msg
    assert "runtimes io.containerd.runc.v2, runc" in msg

    auto = gpu.decide_gpu("auto", req, report=gpu.report_from_info(NVIDIA_INFO))
    msg = gpu.start_failure_message(err, auto)
    assert "auto-detection found them" in msg and "gpu_probe_image" in msg

    # not a GPU problem, or no GPUs asked for: left alone
    assert gpu.start_failure_message("port is already allocated", on) is None
    assert gpu.start_failure_message(err, gpu.decide_gpu("off", req)) is None
    assert gpu.start_failure_message(err, None) is None


async def test_detector_caches_for_interval_and_shares_one_check():
    now = [1000.0]
    calls = []
    detector = gpu.GpuDetector(clock=lambda: now[0])

    def check():
        calls.append(1)
        return EngineGpuReport(True, gpu.VIA_RUNTIME, f"check {len(calls)}")

    async def run(fn):
        await asyncio.sleep(0.01)
        return fn()

    # ten spawns at once: one engine call
    reports = await asyncio.gather(*(detector.report("e1", check, 60, run) for _ in range(10)))
    assert len(calls) == 1 and {r.detail for r in reports} == {"check 1"}

    now[0] += 59
    assert (await detector.report("e1", check, 60, run)).detail == "check 1"
    now[0] += 2
    assert (await detector.report("e1", check, 60, run)).detail == "check 2"
    # another engine has its own answer
    assert (await detector.report("e2", check, 60, run)).detail == "check 3"
    # interval 0: every spawn asks
    assert (await detector.report("e1", check, 0, run)).detail == "check 4"
    assert len(calls) == 4


async def test_detector_does_not_cache_errors():
    detector = gpu.GpuDetector()
    outcomes = [RuntimeError("engine down"), EngineGpuReport(False, detail="fine now")]

    def check():
        o = outcomes.pop(0)
        if isinstance(o, Exception):
            raise o
        return o

    async def run(fn):
        return fn()

    first = await detector.report("e", check, 300, run)
    assert not first.available and first.source == "error" and "engine down" in first.detail
    second = await detector.report("e", check, 300, run)
    assert second.detail == "fine now"


async def test_unreachable_engine_is_reported_not_cached(tmp_path):
    """An engine that does not answer: GPUs off with the reason, and nothing cached."""
    import docker

    from jupyterhub_ext.engine import dockerpool

    client = docker.APIClient(base_url=f"unix://{tmp_path}/no-engine.sock", version="1.41")
    detector = gpu.GpuDetector()
    key = gpu.engine_key(client)
    assert key == f"{tmp_path}/no-engine.sock"
    r = await detector.report(key, lambda: gpu.info_check(client), 300, dockerpool.run)
    assert not r.available and r.source == "error"
    assert "could not ask the Docker engine about GPUs" in r.detail
    assert detector.cached(key, 300) is None
    d = gpu.decide_gpu("auto", GpuRequest(), report=r)
    assert not d.enabled and "could not ask the Docker engine" in d.reason


def test_spawner_traits_refuse_bad_values():
    from traitlets import TraitError

    from jupyterhub_ext.spawner import ExtDockerSpawner

    s = ExtDockerSpawner()
    assert (s.gpu_mode, s.gpu_count, s.docker_sock_group) == ("auto", "all", "docker-sock")
    s.gpu_count = 2
    s.gpu_mode = "ON"  # caseless
    with pytest.raises(TraitError, match="gpu_count must be 'all' or a positive integer"):
        s.gpu_count = 0
    with pytest.raises(TraitError, match="unknown fast"):
        s.gpu_capabilities = ["fast"]
    with pytest.raises(TraitError, match="must be an absolute path"):
        s.docker_sock_container_path = "docker.sock"
    with pytest.raises(TraitError):
        s.gpu_mode = "sometimes"
