"""The three-node Swarm test bed itself (issue 14): nodes, placement, host ports,
overlay DNS, jobs, fake GPUs as generic resources, no default route.

Everything here talks only to the bed's own addresses (10.77.0.0/24, inside the
namespaces the bed made) and to its unix sockets.
"""

from __future__ import annotations

import io
import secrets
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator

import docker
import pytest
import requests

from swarmbed import SwarmBed

pytestmark = pytest.mark.docker

SERVE = (
    'mkdir -p /tmp/srv && echo "$NODE" > /tmp/srv/node && cd /tmp/srv '
    "&& exec python3 -m http.server 8000"
)


@pytest.fixture(scope="module")
def api(swarm_bed: SwarmBed) -> docker.APIClient:
    # API >= 1.30: the manager never asks a registry to resolve the image
    return docker.APIClient(base_url=swarm_bed.manager, version="auto", timeout=30)


@pytest.fixture
def services(api: docker.APIClient) -> Iterator[Callable[..., str]]:
    """Create services named with a per-test prefix; all removed afterwards."""
    prefix = f"jhxbed-{secrets.token_hex(3)}"
    made: list[str] = []

    def _create(suffix: str, task_template: dict, **kwargs) -> str:
        name = f"{prefix}-{suffix}"
        api.create_service(task_template, name=name, **kwargs)
        made.append(name)
        return name

    yield _create
    for name in made:
        try:
            api.remove_service(name)
        except docker.errors.NotFound:
            pass


def task_template(bed: SwarmBed, command: str, *, node: str | None = None, **extra) -> dict:
    spec = {
        "ContainerSpec": {
            "Image": bed.image,
            "Command": ["bash", "-c", command],
            # Swarm's template: the name of the node the task runs on
            "Env": ["NODE={{.Node.Hostname}}"],
            # sleep/python as PID 1 ignore SIGTERM: do not wait 10 s on removal
            "StopGracePeriod": 1_000_000_000,
        },
        "RestartPolicy": {"Condition": "none"},
        "Networks": [{"Target": bed.network}],
    }
    if node:
        spec["Placement"] = {"Constraints": [f"node.labels.jhext.node=={node}"]}
    spec.update(extra)
    return spec


HOST_PORT = {
    "Mode": "dnsrr",
    "Ports": [{"Protocol": "tcp", "TargetPort": 8000, "PublishMode": "host"}],
}


def wait_tasks(
    api: docker.APIClient, name: str, states: set[str], *, count: int = 1, timeout: float = 30
) -> list[dict]:
    deadline = time.monotonic() + timeout
    tasks: list[dict] = []
    while time.monotonic() < deadline:
        tasks = api.tasks(filters={"service": name})
        done = [t for t in tasks if t["Status"]["State"] in states]
        if len(done) >= count:
            return done
        failed = [t for t in tasks if t["Status"]["State"] in ("failed", "rejected")]
        if failed and "failed" not in states:
            raise AssertionError(f"{name}: task failed: {failed[0]['Status']}")
        time.sleep(0.2)
    raise AssertionError(
        f"{name}: no task reached {states} in {timeout} s: {[t['Status'] for t in tasks]}"
    )


def http_get(url: str, timeout: float = 15) -> requests.Response:
    """GET, retrying while the server inside the task is still starting."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return requests.get(url, timeout=3)
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_three_nodes_ready_with_labels_and_gpus(swarm_bed: SwarmBed, api: docker.APIClient) -> None:
    print(
        f"\nbed bring-up {swarm_bed.bring_up_seconds:.1f} s, "
        f"image onto nodes {swarm_bed.image_seconds:.1f} s (started here: {swarm_bed.started_here})"
    )
    nodes = {n["Description"]["Hostname"]: n for n in api.nodes()}
    assert sorted(nodes) == ["node1", "node2", "node3"]
    for name, node in nodes.items():
        assert node["Status"]["State"] == "ready", node["Status"]
        assert node["Spec"]["Availability"] == "active"
        assert node["Spec"]["Labels"]["jhext.node"] == name
        assert node["ID"] == swarm_bed.node(name).node_id
        assert node["Status"]["Addr"] == swarm_bed.node(name).addr
    assert nodes["node1"]["ManagerStatus"]["Leader"] is True
    assert nodes["node1"]["Spec"]["Role"] == "manager"
    assert {nodes[n]["Spec"]["Role"] for n in ("node2", "node3")} == {"worker"}
    assert nodes["node2"]["Spec"]["Labels"].get("gpu") == "true"
    assert "gpu" not in nodes["node3"]["Spec"]["Labels"]
    gpus = {
        g["NamedResourceSpec"]["Value"]
        for g in nodes["node2"]["Description"]["Resources"].get("GenericResources") or []
        if g.get("NamedResourceSpec", {}).get("Kind") == "NVIDIA-GPU"
    }
    assert gpus == {"GPU-fake0", "GPU-fake1"}
    for name in ("node1", "node3"):
        assert not nodes[name]["Description"]["Resources"].get("GenericResources")
    net = api.inspect_network(swarm_bed.network)
    assert net["Driver"] == "overlay" and net["Scope"] == "swarm" and net["Attachable"] is True
    # every node holds the same single-user image (no registry involved)
    ids = {
        docker.APIClient(base_url=n.host, version="auto").inspect_image(swarm_bed.image)["Id"]
        for n in swarm_bed.nodes
    }
    assert len(ids) == 1


def test_pinned_services_answer_on_host_ports_and_by_name(
    swarm_bed: SwarmBed, api: docker.APIClient, services: Callable[..., str]
) -> None:
    names = {
        node.name: services(
            node.name, task_template(swarm_bed, SERVE, node=node.name), endpoint_spec=HOST_PORT
        )
        for node in swarm_bed.nodes
    }
    for node in swarm_bed.nodes:
        (task,) = wait_tasks(api, names[node.name], {"running"})
        assert task["NodeID"] == node.node_id, (
            f"{names[node.name]} ran on {swarm_bed.by_id(task['NodeID']).name}"
        )
        ports = task["Status"]["PortStatus"]["Ports"]
        # the engine reports one binding per address family, on the same port
        assert {(p["PublishMode"], p["TargetPort"]) for p in ports} == {("host", 8000)}
        (published,) = {p["PublishedPort"] for p in ports}
        # from the root namespace (the hub's place in the tests) to the node's address
        r = http_get(f"http://{node.addr}:{published}/node")
        assert r.status_code == 200
        assert r.text.strip() == node.name
    # across the overlay: node3's task reaches node1's by service name (dnsrr)
    (task3,) = wait_tasks(api, names["node3"], {"running"})
    node3 = docker.APIClient(base_url=swarm_bed.node("node3").host, version="auto")
    cid = task3["Status"]["ContainerStatus"]["ContainerID"]
    fetch = (
        "import urllib.request as u; "
        f"print(u.urlopen('http://{names['node1']}:8000/node', timeout=10).read().decode().strip())"
    )
    exe = node3.exec_create(cid, ["python3", "-c", fetch])
    out = node3.exec_start(exe["Id"]).decode().strip()
    assert node3.exec_inspect(exe["Id"])["ExitCode"] == 0, out
    assert out == "node1"


def test_replicated_job_pinned_to_node3_completes(
    swarm_bed: SwarmBed, api: docker.APIClient, services: Callable[..., str]
) -> None:
    name = services(
        "job",
        task_template(swarm_bed, 'test "$NODE" = node3 && test "$(id -u)" = 1000', node="node3"),
        mode=docker.types.ServiceMode("replicated-job", concurrency=1, replicas=1),
    )
    (task,) = wait_tasks(api, name, {"complete", "failed"})
    assert task["Status"]["State"] == "complete", task["Status"]
    assert task["NodeID"] == swarm_bed.node("node3").node_id
    assert task["Status"]["ContainerStatus"]["ExitCode"] == 0


def test_gpu_reservations_land_on_node2_with_distinct_ids(
    swarm_bed: SwarmBed, api: docker.APIClient, services: Callable[..., str]
) -> None:
    gpu = {
        "Reservations": {
            "GenericResources": [{"DiscreteResourceSpec": {"Kind": "NVIDIA-GPU", "Value": 1}}]
        }
    }
    node2 = docker.APIClient(base_url=swarm_bed.node("node2").host, version="auto")
    read = "import os; print(os.environ['DOCKER_RESOURCE_NVIDIA-GPU'])"
    seen = []
    for i in range(2):
        name = services(f"gpu{i}", task_template(swarm_bed, "exec sleep 300", Resources=gpu))
        (task,) = wait_tasks(api, name, {"running"})
        assert task["NodeID"] == swarm_bed.node("node2").node_id
        exe = node2.exec_create(
            task["Status"]["ContainerStatus"]["ContainerID"], ["python3", "-c", read]
        )
        out = node2.exec_start(exe["Id"]).decode().strip()
        assert node2.exec_inspect(exe["Id"])["ExitCode"] == 0, out
        seen.append(out)
    assert sorted(seen) == ["GPU-fake0", "GPU-fake1"]
    # both GPUs are taken: a third reservation is not placed anywhere
    name = services("gpu2", task_template(swarm_bed, "exec sleep 300", Resources=gpu))
    (task,) = wait_tasks(api, name, {"pending"})
    time.sleep(1)
    (task,) = api.tasks(filters={"service": name})
    assert task["Status"]["State"] == "pending"
    assert "no suitable node" in task["Status"].get("Err", ""), task["Status"]


def test_node_namespaces_have_no_default_route(swarm_bed: SwarmBed) -> None:
    for i, node in enumerate(swarm_bed.nodes, start=1):
        ns = f"jhxsw{i}"
        for family in ("-4", "-6"):
            out = subprocess.run(
                ["ip", family, "-n", ns, "route", "show", "default"],
                capture_output=True,
                text=True,
                check=True,
            )
            assert out.stdout.strip() == "", f"{ns} has a default route: {out.stdout}"
        addrs = subprocess.run(
            ["ip", "-4", "-n", ns, "-o", "addr", "show", "dev", "eth0"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert f"inet {node.addr}/24" in addrs


def test_registry_on_node1_serves_the_workers(swarm_bed: SwarmBed) -> None:
    if not swarm_bed.registry:
        pytest.skip("the bed came up without its registry (docker-registry could not be fetched)")
    node1 = docker.APIClient(base_url=swarm_bed.node("node1").host, version="auto")
    node3 = docker.APIClient(base_url=swarm_bed.node("node3").host, version="auto")
    # a tiny image (one file) made on node 1: quick to push and pull
    payload = secrets.token_hex(16).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("marker")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    tag = secrets.token_hex(4)
    node1.import_image_from_data(buf.getvalue(), repository="jhxbed/tiny", tag=tag)
    (pinned,) = swarm_bed.push_image(f"jhxbed/tiny:{tag}")
    assert pinned.startswith(f"{swarm_bed.registry}/jhxbed/tiny@sha256:")
    try:
        node3.pull(pinned)
        assert node3.inspect_image(pinned)["Id"] == node1.inspect_image(f"jhxbed/tiny:{tag}")["Id"]
    finally:
        for client, ref in ((node3, pinned), (node1, f"{swarm_bed.registry}/jhxbed/tiny:{tag}")):
            client.remove_image(ref, force=True)
        node1.remove_image(f"jhxbed/tiny:{tag}", force=True)
