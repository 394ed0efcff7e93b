"""A single-user container's create arguments, turned into a Swarm service.

Pure functions on plain values. ExtSwarmSpawner builds a server's container
exactly as ExtDockerSpawner does (the same features: volume sets, grants,
profiles, the admin's ``extra_host_config``) and this module translates the
result, in Docker's API format, into ``create_service`` arguments. One
translator is also the one gate for what Swarm cannot do: a service silently
drops ``privileged``, devices and device requests, so a host config that
needs them is refused here with a message, never started without them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

# the generic resource GPUs are advertised as (dockerd's node-generic-resources)
DEFAULT_GPU_RESOURCE = "NVIDIA-GPU"

# HostConfig keys a Swarm service cannot carry (dropped without a word by the engine)
UNSUPPORTED = {
    "Privileged": "privileged containers",
    "Devices": "host devices",
    "DeviceRequests": "device requests (use GPUs as generic resources)",
    "DeviceCgroupRules": "device cgroup rules",
}


class SwarmSpecError(ValueError):
    """A server's settings that a Swarm service cannot honour; the message says which."""


def unsupported(host_config: Mapping[str, Any]) -> list[str]:
    """What in an API-format HostConfig a Swarm service would silently drop."""
    out = []
    for key, what in UNSUPPORTED.items():
        if host_config.get(key):
            out.append(what)
    return out


def check_supported(host_config: Mapping[str, Any]) -> None:
    """Raise SwarmSpecError naming each setting a service cannot honour."""
    missing = unsupported(host_config)
    if missing:
        raise SwarmSpecError(
            "This hub runs servers as Docker Swarm services, which cannot have "
            + ", ".join(missing)
            + ". Remove it from the configuration (or the user's group), or use "
            "ExtDockerSpawner on a single host for such servers."
        )


def _bind_mount(bind: str) -> dict[str, Any]:
    """``src:dst[:mode]`` -> a service mount (binds are host paths of the task's node)."""
    parts = bind.split(":")
    src, dst = parts[0], parts[1]
    modes = set(parts[2].split(",")) if len(parts) > 2 else set()
    kind = "bind" if src.startswith("/") else "volume"
    return {"Type": kind, "Source": src, "Target": dst, "ReadOnly": "ro" in modes}


def service_mounts(
    host_config: Mapping[str, Any], volume_options: Mapping[str, Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Every mount of the container as a service mount.

    Named volumes stay volumes (DockerSpawner's SwarmSpawner turns them into
    binds, DockerSpawner#536); ``volume_options`` maps a volume name to its
    ``VolumeOptions`` (labels, driver), which the node's engine applies when
    it creates the volume at the task's start.
    """
    mounts = [dict(m) for m in host_config.get("Mounts") or []]
    mounts += [_bind_mount(b) for b in host_config.get("Binds") or []]
    for m in mounts:
        opts = volume_options.get(m.get("Source", "")) if m.get("Type") == "volume" else None
        if opts:
            m["VolumeOptions"] = dict(opts)
    return mounts


def volume_options(
    labels: Mapping[str, str], driver: str = "", driver_opts: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """A service mount's ``VolumeOptions`` for a volume of a volume set."""
    out: dict[str, Any] = {"Labels": dict(labels)}
    if driver and driver != "local" or driver_opts:
        out["DriverConfig"] = {"Name": driver or "local", "Options": dict(driver_opts or {})}
    return out


def resources(
    host_config: Mapping[str, Any], *, gpus: int = 0, gpu_resource: str = DEFAULT_GPU_RESOURCE
) -> dict[str, Any]:
    """Limits and reservations; GPUs are reserved as a generic resource the scheduler hands out."""
    limits: dict[str, Any] = {}
    reservations: dict[str, Any] = {}
    if host_config.get("Memory"):
        limits["MemoryBytes"] = int(host_config["Memory"])
    if host_config.get("NanoCpus"):
        limits["NanoCPUs"] = int(host_config["NanoCpus"])
    elif host_config.get("CpuQuota") and host_config.get("CpuPeriod"):
        limits["NanoCPUs"] = int(host_config["CpuQuota"] * 1e9 / host_config["CpuPeriod"])
    if host_config.get("PidsLimit"):
        limits["Pids"] = int(host_config["PidsLimit"])
    if host_config.get("MemoryReservation"):
        reservations["MemoryBytes"] = int(host_config["MemoryReservation"])
    if gpus:
        reservations["GenericResources"] = [
            {"DiscreteResourceSpec": {"Kind": gpu_resource, "Value": int(gpus)}}
        ]
    out: dict[str, Any] = {}
    if limits:
        out["Limits"] = limits
    if reservations:
        out["Reservations"] = reservations
    return out


def _env_list(environment: Mapping[str, Any] | Iterable[str] | None) -> list[str]:
    if not environment:
        return []
    if isinstance(environment, Mapping):
        return [f"{k}={v}" for k, v in environment.items()]
    return list(environment)


def _container_spec(
    create_kwargs: Mapping[str, Any],
    host_config: Mapping[str, Any],
    mounts: list[dict[str, Any]],
) -> dict[str, Any]:
    command = create_kwargs.get("command")
    spec: dict[str, Any] = {
        "Image": create_kwargs["image"],
        "Env": _env_list(create_kwargs.get("environment")),
        "Labels": dict(create_kwargs.get("labels") or {}),
        "Mounts": mounts,
    }
    if command:
        # create_container's "command" is the image's CMD: arguments to its entrypoint
        spec["Args"] = [command] if isinstance(command, str) else list(command)
    if create_kwargs.get("entrypoint"):
        entry = create_kwargs["entrypoint"]
        spec["Command"] = [entry] if isinstance(entry, str) else list(entry)
    for key, api in (("user", "User"), ("working_dir", "Dir"), ("hostname", "Hostname")):
        if create_kwargs.get(key):
            spec[api] = create_kwargs[key]
    for key, api in (
        ("CapAdd", "CapabilityAdd"),
        ("CapDrop", "CapabilityDrop"),
        ("GroupAdd", "Groups"),
        ("Ulimits", "Ulimits"),
        ("Sysctls", "Sysctls"),
        ("ReadonlyRootfs", "ReadOnly"),
        ("Init", "Init"),
        ("ExtraHosts", "Hosts"),
    ):
        if host_config.get(key):
            spec[api] = host_config[key]
    return spec


def service_create_kwargs(
    create_kwargs: Mapping[str, Any],
    *,
    name: str,
    service_labels: Mapping[str, str],
    volume_options: Mapping[str, Mapping[str, Any]] | None = None,
    network: str = "",
    port: int = 8888,
    endpoint: str = "dnsrr",
    constraints: Iterable[str] = (),
    gpus: int = 0,
    gpu_resource: str = DEFAULT_GPU_RESOURCE,
) -> dict[str, Any]:
    """``create_service`` arguments for a container's ``create_container`` arguments.

    ``create_kwargs`` is what ExtDockerSpawner would create a container with
    (``host_config`` already in API format). ``endpoint`` is ``"dnsrr"`` (the
    hub reaches the server by service name on an overlay network it shares)
    or ``"host-port"`` (the port is published on the node the task runs on;
    the hub reaches it at the node's address). The service never restarts on
    its own: the hub decides what happens to a server that exited.
    """
    host_config = dict(create_kwargs.get("host_config") or {})
    check_supported(host_config)
    mounts = service_mounts(host_config, volume_options or {})
    task: dict[str, Any] = {
        "ContainerSpec": _container_spec(create_kwargs, host_config, mounts),
        "RestartPolicy": {"Condition": "none", "MaxAttempts": 0},
        "Resources": resources(host_config, gpus=gpus, gpu_resource=gpu_resource),
    }
    placement = [c for c in constraints if c]
    if placement:
        task["Placement"] = {"Constraints": placement}
    mode = host_config.get("NetworkMode") or ""
    if network:
        task["Networks"] = [{"Target": network}]
    elif mode == "host":
        task["Networks"] = [{"Target": "host"}]
    if endpoint == "host-port":
        endpoint_spec = {
            "Mode": "vip",
            "Ports": [{"Protocol": "tcp", "TargetPort": int(port), "PublishMode": "host"}],
        }
    elif endpoint == "dnsrr":
        endpoint_spec = {"Mode": "dnsrr"}
    else:
        raise SwarmSpecError(f"endpoint must be 'dnsrr' or 'host-port', not {endpoint!r}")
    return {
        "name": name,
        "labels": dict(service_labels),
        "task_template": task,
        "endpoint_spec": endpoint_spec,
    }


# -- reading what the engine says ----------------------------------------------

# task states before "running", and the final ones (Docker's swarm task states)
WAITING = {"new", "pending", "assigned", "accepted", "preparing", "ready", "starting"}
FINAL = {"complete", "failed", "shutdown", "rejected", "orphaned", "remove"}


def node_problem(node: Mapping[str, Any]) -> str | None:
    """Why a node cannot run a server now (down, drained, paused); None when it can."""
    name = (node.get("Description") or {}).get("Hostname") or node.get("ID", "?")
    state = (node.get("Status") or {}).get("State", "unknown")
    availability = (node.get("Spec") or {}).get("Availability", "active")
    if state != "ready":
        return f"node {name} is {state}"
    if availability != "active":
        return f"node {name} is {'drained' if availability == 'drain' else availability}"
    return None


def node_name(node: Mapping[str, Any]) -> str:
    return (node.get("Description") or {}).get("Hostname") or node.get("ID", "?")


def task_state(task: Mapping[str, Any]) -> tuple[str, str]:
    """(state, the engine's error or message) of a task."""
    status = task.get("Status") or {}
    return str(status.get("State", "unknown")).lower(), str(
        status.get("Err") or status.get("Message") or ""
    )


def pending_reason(task: Mapping[str, Any]) -> str | None:
    """The scheduler's reason a task cannot be placed (it would wait forever), if any."""
    state, err = task_state(task)
    if state == "pending" and ("no suitable node" in err or "insufficient" in err):
        return err
    return None


def published_port(task: Mapping[str, Any], target_port: int) -> int | None:
    """The node port a ``mode=host`` publication got for ``target_port``."""
    ports = ((task.get("Status") or {}).get("PortStatus") or {}).get("Ports") or []
    for p in ports:
        if p.get("TargetPort") == target_port and p.get("PublishedPort"):
            return int(p["PublishedPort"])
    return None


def node_address(node: Mapping[str, Any]) -> str:
    """The address other hosts reach a node at (what it advertised when it joined)."""
    addr = (node.get("Status") or {}).get("Addr") or ""
    if addr in ("", "0.0.0.0"):
        addr = ((node.get("ManagerStatus") or {}).get("Addr") or "").rsplit(":", 1)[0]
    return addr


def task_resources(task: Mapping[str, Any]) -> dict[str, list[str]]:
    """Generic resources the scheduler gave a task: kind -> ids (GPU ids, for GPUs)."""
    out: dict[str, list[str]] = {}
    assigned = task.get("AssignedGenericResources") or []
    for r in assigned:
        named = r.get("NamedResourceSpec")
        if named:
            out.setdefault(named["Kind"], []).append(named["Value"])
    return out


def gpu_count_of_nodes(nodes: Iterable[Mapping[str, Any]], kind: str) -> dict[str, int]:
    """How many ``kind`` resources each node advertises (GPU auto-detection on Swarm)."""
    out = {}
    for node in nodes:
        res = ((node.get("Description") or {}).get("Resources") or {}).get("GenericResources")
        n = 0
        for r in res or []:
            named, discrete = r.get("NamedResourceSpec"), r.get("DiscreteResourceSpec")
            if named and named.get("Kind") == kind:
                n += 1
            elif discrete and discrete.get("Kind") == kind:
                n += int(discrete.get("Value", 0))
        if n:
            out[node_name(node)] = n
    return out
