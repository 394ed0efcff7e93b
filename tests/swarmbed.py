"""The three-node Docker Swarm test bed as a pytest fixture (issue 14, "Test bed").

``swarm_bed`` (session scope) brings up ``scripts/swarm-testbed.sh`` once, or
reuses a bed that is already up, copies the single-user image onto every node
and yields a :class:`SwarmBed`. A bed this session brought up is torn down at
the end of the session; one that was already up is left as it was.

Skips (with the reason) when the machine cannot run it: not root, no
``ip netns``/``nsenter``/``unshare``/``dockerd``, or the engines do not start.
The registry on node 1 is optional (``SwarmBed.registry`` is empty without it).
Set ``JHEXT_SWARM_KEEP=1`` to keep a bed this session started.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "swarm-testbed.sh"


@dataclass
class SwarmNode:
    name: str  # node1..3: hostname and the jhext.node label
    host: str  # unix:// socket of this node's dockerd
    addr: str  # the node's address on the bed's bridge
    node_id: str  # Swarm node ID


@dataclass
class SwarmBed:
    manager: str  # DOCKER_HOST of the manager (node1)
    bridge_addr: str  # the root namespace's address on the bed's bridge
    network: str  # the attachable overlay network
    registry: str  # "10.77.0.11:5000" (registry on node 1), "" when it could not be had
    nodes: list[SwarmNode]
    image: str = ""  # the single-user image, present on every node
    bring_up_seconds: float = 0.0
    image_seconds: float = 0.0
    started_here: bool = False
    extra: dict[str, str] = field(default_factory=dict)

    def node(self, name: str) -> SwarmNode:
        return next(n for n in self.nodes if n.name == name)

    def by_id(self, node_id: str) -> SwarmNode:
        return next(n for n in self.nodes if n.node_id == node_id)

    def load_image(self, *refs: str) -> None:
        """Copy images from the private test engine onto every node (no registry)."""
        _run("load-image", *refs)

    def push_image(self, *refs: str) -> list[str]:
        """Push images (from node 1, else the test engine) to the registry on node 1.

        Returns ``registry/repo@sha256:...`` per image: what a service pins to;
        workers pull it from node 1."""
        return _run("push-image", *refs).stdout.split()

    def hub_config(self, extra: str = "") -> str:
        """Hub config for ExtSwarmSpawner on this bed (for tests/hubctl.py's Hub).

        The hub runs in the root namespace and reaches servers at their node's
        address on the bed's bridge; servers use their node's network and
        reach the hub at the bridge address."""
        return f"""
c.JupyterHub.spawner_class = "ext-swarm"
c.JupyterHub.hub_ip = "{self.bridge_addr}"
c.JupyterHub.hub_connect_ip = "{self.bridge_addr}"
c.DockerSpawner.client_kwargs = {{"base_url": "{self.manager}"}}
c.DockerSpawner.network_name = "host"
c.ExtSwarmSpawner.gpu_mode = "off"
# the bed's engines keep their sockets side by side on this machine
c.ExtSwarmSpawner.swarm_node_socket = "/run/jhx-swarm/{{node}}/docker.sock"
{extra}
"""

    def cleanup(self, prefix: str) -> None:
        """Remove the services (manager) and the containers and volumes (every node)
        whose names start with ``prefix``."""
        import docker

        with docker.APIClient(base_url=self.manager, version="auto") as api:
            for svc in api.services(filters={"name": prefix}):
                if svc["Spec"]["Name"].startswith(prefix):
                    api.remove_service(svc["ID"])
        for node in self.nodes:
            with docker.APIClient(base_url=node.host, version="auto") as api:
                for c in api.containers(all=True, filters={"name": prefix}):
                    api.remove_container(c["Id"], force=True)
                for v in api.volumes().get("Volumes") or []:
                    if v["Name"].startswith(prefix):
                        try:
                            api.remove_volume(v["Name"], force=True)
                        except docker.errors.APIError:
                            pass  # still held by a container being removed


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if os.environ.get("DOCKER_HOST"):
        # images come from the engine the rest of the suite uses
        env["JHX_SWARM_SOURCE_HOST"] = os.environ["DOCKER_HOST"]
    out = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env)
    if check and out.returncode != 0:
        raise RuntimeError(f"swarm-testbed.sh {' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return out


def missing_requirement() -> str | None:
    """Why this machine cannot run the bed, or None."""
    if os.geteuid() != 0:
        return "the Swarm test bed needs root (network namespaces and dockerd)"
    for cmd in ("ip", "nsenter", "unshare", "dockerd", "mkfifo"):
        if not shutil.which(cmd):
            return f"the Swarm test bed needs `{cmd}` (scripts/setup.sh installs it)"
    if not (Path("/usr/bin/docker").exists() or shutil.which("docker")):
        return "the Swarm test bed needs the docker CLI (Debian docker.io)"
    probe = "jhxsw-probe"
    out = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if out.returncode != 0:
        return f"`ip netns add` is not allowed here: {out.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def read_env() -> dict[str, str]:
    lines = _run("env").stdout.splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def bed_from_env(env: dict[str, str]) -> SwarmBed:
    nodes = [
        SwarmNode(
            name=f"node{i}",
            host=env[f"JHX_SWARM_NODE{i}_HOST"],
            addr=env[f"JHX_SWARM_NODE{i}_ADDR"],
            node_id=env[f"JHX_SWARM_NODE{i}_ID"],
        )
        for i in (1, 2, 3)
    ]
    return SwarmBed(
        manager=env["JHX_SWARM_MANAGER"],
        bridge_addr=env["JHX_SWARM_BRIDGE_ADDR"],
        network=env["JHX_SWARM_NETWORK"],
        registry=env.get("JHX_SWARM_REGISTRY", ""),
        nodes=nodes,
    )


class BedUnavailable(RuntimeError):
    """This machine cannot run the bed, or it did not come up (the message says why)."""


@contextmanager
def open_bed(image: str) -> Iterator[SwarmBed]:
    """The bed with ``image`` on every node: reused when already up, else brought
    up here and torn down at the end (unless JHEXT_SWARM_KEEP=1)."""
    why = missing_requirement()
    if why:
        raise BedUnavailable(why)
    was_up = _run("status", check=False).returncode == 0
    t0 = time.monotonic()
    if not was_up:
        up = _run("up", check=False)
        if up.returncode != 0:
            _run("down", check=False)
            raise BedUnavailable(f"the Swarm test bed did not come up: {up.stderr.strip()[-1500:]}")
    bed = bed_from_env(read_env())
    bed.bring_up_seconds = time.monotonic() - t0
    bed.started_here = not was_up
    try:
        t1 = time.monotonic()
        bed.image = image
        bed.load_image(bed.image)
        bed.image_seconds = time.monotonic() - t1
        yield bed
    finally:
        if bed.started_here and os.environ.get("JHEXT_SWARM_KEEP") != "1":
            _run("down", check=False)


@pytest.fixture(scope="session")
def swarm_bed(images: tuple[str, str]) -> Iterator[SwarmBed]:
    cm = open_bed(images[0])
    try:
        bed = cm.__enter__()
    except BedUnavailable as e:
        pytest.skip(str(e))
    try:
        yield bed
    finally:
        cm.__exit__(None, None, None)
