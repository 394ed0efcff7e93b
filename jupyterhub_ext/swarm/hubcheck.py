"""At hub start: refuse a Swarm config that would need what a service cannot have.

A Swarm service silently drops ``privileged``, devices and device requests:
servers would start without them and nobody would notice. A hub configured
to grant them (a ``docker-privileged`` group, ``extra_host_config`` keys,
``gpu_count = "all"``, our own GPU device allocation: ``gpu_devices``,
``gpu_sharing``, a profile's ``gpus = "all"``; the one-engine memory admission
``admission_memory_reserve``) does not start; the message
names each setting.
"""

from __future__ import annotations

from typing import Any

from jupyterhub_ext.configutil import configured, spawner_setting
from jupyterhub_ext.swarm.servicespec import SwarmSpecError

# extra_host_config keys (docker-py names) a service cannot carry
DROPPED_HOST_CONFIG = ("privileged", "devices", "device_requests", "device_cgroup_rules")


def uses_swarm(c: Any) -> bool:
    """Whether the hub's spawner class is ExtSwarmSpawner (by entry point, path or class)."""
    cls = configured(c, "JupyterHub", "spawner_class", "")
    if isinstance(cls, str):
        return cls == "ext-swarm" or cls.rsplit(".", 1)[-1] == "ExtSwarmSpawner"
    return isinstance(cls, type) and any(k.__name__ == "ExtSwarmSpawner" for k in cls.mro())


def problems(c: Any) -> list[str]:
    """Each setting of a Swarm hub that a service would silently drop."""

    def setting(name: str, default: Any) -> Any:
        return configured(c, "ExtSwarmSpawner", name, spawner_setting(c, name, default))

    out = []
    group = setting("docker_privileged_group", "")
    if group:
        out.append(f"docker_privileged_group = {group!r}: members would get privileged containers")
    extra = setting("extra_host_config", {})
    if isinstance(extra, dict):
        out += [f"extra_host_config[{k!r}]" for k in DROPPED_HOST_CONFIG if extra.get(k)]
    if str(setting("gpu_count", 1)) == "all":
        out.append('gpu_count = "all": GPUs are reserved by count on Swarm')
    # Swarm's scheduler hands each GPU server free GPUs of a node (generic
    # resources): our own device allocation would pick devices of no node
    if setting("gpu_devices", []):
        out.append(
            "gpu_devices: on Swarm the nodes advertise their GPUs as generic "
            "resources and the scheduler allocates them (docs/deployment/swarm.md)"
        )
    sharing = setting("gpu_sharing", 1)
    if sharing != 1:
        out.append(f"gpu_sharing = {sharing!r}: a Swarm generic resource goes to one server")
    reserve = setting("admission_memory_reserve", None)
    if reserve is not None:
        out.append(
            f"admission_memory_reserve = {reserve!r}: on Swarm the scheduler admits "
            "servers by their mem_guarantee (a memory reservation) on each node"
        )
    profiles = setting("profiles", [])
    for p in profiles if isinstance(profiles, list) else []:
        if isinstance(p, dict) and str(p.get("gpus", 0)) == "all":
            out.append(
                f'profile {p.get("slug")!r}: gpus = "all": GPUs are reserved by count on '
                "Swarm, give a number"
            )
    return out


def check_at_hub_start(c: Any) -> None:
    """Raise SwarmSpecError (the hub does not start) listing what Swarm cannot do."""
    if not uses_swarm(c):
        return
    found = problems(c)
    if found:
        raise SwarmSpecError(
            "This hub runs servers as Docker Swarm services, which silently drop "
            "privileged mode, devices and device requests. Refusing to start rather "
            "than start servers without them; remove or change:\n  - " + "\n  - ".join(found)
        )
