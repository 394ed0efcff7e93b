"""The spawner side of profiles on a bare ExtDockerSpawner (no hub, no Docker)."""

from __future__ import annotations

from types import SimpleNamespace

from jupyterhub_ext import gpu
from jupyterhub_ext.engine.labels import LABEL_GPU_DEVICES, LABEL_MEM_GUARANTEE, LABEL_PROFILE
from jupyterhub_ext.spawner import ExtDockerSpawner

RAW = [
    {"slug": "small", "display_name": "Small <b>", "cpu_limit": 1, "default": True},
    {"slug": "big", "image": "lab:big", "mem_limit": "2G", "environment": {"X": "1"}},
    {"slug": "gpu", "gpus": 2, "groups": ["gpu"]},
]


# only what rendering DockerSpawner's object name reads (it re-renders when the image changes)
USER = SimpleNamespace(name="alice", id=1, url="/user/alice/")


def spawner(**kw) -> ExtDockerSpawner:
    return ExtDockerSpawner(user=USER, profiles=RAW, image="lab:base", environment={"A": "a"}, **kw)


def test_apply_profile_restores_the_admins_settings_between_spawns():
    s = spawner()
    admins = (s.image, s.mem_limit, s.environment, s.cpu_limit)
    ps = {p.slug: p for p in s.parsed_profiles}
    s.apply_profile(ps["big"])
    assert (s.image, s.mem_limit, s.environment) == ("lab:big", 2 * 1024**3, {"A": "a", "X": "1"})
    s.apply_profile(ps["small"])
    # nothing of "big" left behind: image, memory and environment are the admin's again
    assert (s.image, s.mem_limit, s.environment) == admins[:3]
    assert s.cpu_limit == 1
    s.apply_profile(None)
    assert (s.image, s.mem_limit, s.environment, s.cpu_limit) == admins


def test_gpu_profile_request_and_no_gpu_profile_decision():
    s = spawner()
    ps = {p.slug: p for p in s.parsed_profiles}
    s.apply_profile(ps["gpu"])
    req, forced = s.profile_gpu_request(gpu.GpuRequest(count=-1, device_ids=("9",)))
    assert forced and req.count == 2 and req.device_ids == ()
    s.apply_profile(ps["small"])
    on = gpu.GpuDecision(True, "gpu_mode is on", gpu.GpuRequest())
    off = s.profile_gpu_decision(on, "on")
    assert not off.enabled and "small" in off.reason
    assert off.environment() == {"NVIDIA_VISIBLE_DEVICES": "void"}


def test_devices_discovered_from_the_engines_cdi_list_when_not_configured():
    s = spawner()
    report = gpu.EngineGpuReport(
        True,
        gpu.VIA_CDI,
        "cdi",
        cdi_devices=("nvidia.com/gpu=0", "nvidia.com/gpu=1", "x.com/fpga=0"),
    )
    d = gpu.GpuDecision(True, "auto", gpu.GpuRequest(), gpu.VIA_CDI, (), report)
    assert s.placement_devices(d) == ["nvidia.com/gpu=0", "nvidia.com/gpu=1"]
    assert spawner(gpu_devices=["GPU-a"]).placement_devices(d) == ["GPU-a"]
    runtime = gpu.GpuDecision(True, "auto", gpu.GpuRequest(), gpu.VIA_RUNTIME)
    assert s.placement_devices(runtime) == []


def test_form_lists_only_allowed_profiles_escaped_with_default_checked():
    s = spawner()
    html = s.render_profiles_form(set())
    assert 'value="gpu"' not in html and "Small &lt;b&gt;" in html and "<b>" not in html
    small = html.split('value="small"')[1].split(">")[0]
    assert "checked" in small
    assert 'value="gpu"' in s.render_profiles_form({"gpu"})
    # the form gives user_options only the slug
    assert s.options_from_form({"profile": ["big"], "image": ["evil"], "_xsrf": ["t"]}) == {
        "profile": "big"
    }


def test_labels_carry_profile_gpus_and_guarantee():
    s = ExtDockerSpawner(user=USER, profiles=[{"slug": "g", "mem_guarantee": "1G", "gpus": 1}])
    s.apply_profile(s.parsed_profiles[0])
    s._gpu_held = ("GPU-b",)
    assert s.profile_labels() == {
        LABEL_PROFILE: "g",
        LABEL_GPU_DEVICES: "GPU-b",
        LABEL_MEM_GUARANTEE: str(1024**3),
    }
    assert s.profile_host_config() == {"mem_reservation": 1024**3}


def test_a_group_override_applied_since_is_kept():
    s = spawner()
    ps = {p.slug: p for p in s.parsed_profiles}
    s.apply_profile(ps["big"])
    s.image = "lab:group"  # what group_overrides does before the next spawn's profile
    s.apply_profile(ps["small"])
    assert s.image == "lab:group"
    assert s.mem_limit == spawner().mem_limit  # big's memory is undone
