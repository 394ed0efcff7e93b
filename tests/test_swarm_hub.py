"""ExtSwarmSpawner on a real three-node Docker Swarm (tests/swarmbed.py), with a real hub.

The hub runs in the root namespace and reaches servers at their node's
address on the bed's bridge; servers use their node's network
(``network_name = "host"``) and reach the hub at the bridge address.
"""

from __future__ import annotations

import time

import docker
import pytest
import requests

from hubctl import HubError

pytestmark = [pytest.mark.docker]


def swarm_config(bed, extra: str = "") -> str:
    return bed.hub_config(extra)


@pytest.fixture
def manager(swarm_bed):
    client = docker.APIClient(base_url=swarm_bed.manager, version="auto")
    yield client
    client.close()


def task_node(api: docker.APIClient, service: str) -> str:
    tasks = [
        t for t in api.tasks(filters={"service": service}) if t["Status"]["State"] == "running"
    ]
    assert len(tasks) == 1, tasks
    return tasks[0]["NodeID"]


def service_name(hub, user: str) -> str:
    return f"{hub.prefix}-{user}"


def put_file(hub, user: str, token: str, path: str, text: str) -> None:
    r = requests.put(
        f"{hub.url}/user/{user}/api/contents/{path}",
        headers={"Authorization": f"token {token}"},
        json={"type": "file", "format": "text", "content": text},
        timeout=30,
    )
    assert r.status_code in (200, 201), r.text


def get_file(hub, user: str, token: str, path: str) -> str:
    r = requests.get(
        f"{hub.url}/user/{user}/api/contents/{path}",
        headers={"Authorization": f"token {token}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return r.json()["content"]


def test_users_spread_over_nodes_keep_their_data_and_their_node(make_hub, swarm_bed, manager):
    hub = make_hub(swarm_config(swarm_bed))
    users = ["alice", "bob", "carol"]
    for u in users:
        hub.create_user(u)
    hub.spawn_many(users)
    nodes = {u: task_node(manager, service_name(hub, u)) for u in users}
    assert len(set(nodes.values())) >= 2, nodes
    tokens = {u: hub.token_for(u) for u in users}
    # each server answers through the hub's proxy, and its home is its own
    for u in users:
        put_file(hub, u, tokens[u], "mine.txt", f"written by {u}")

    # a broadcast reaches the servers on every node
    hub.create_user("admin", admin=True)
    r = requests.post(
        f"{hub.url}/hub/api/notifications/broadcast",
        headers={"Authorization": f"token {hub.token_for('admin')}"},
        json={"message": "hello every node"},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    assert (r.json()["total"], r.json()["successful"]) == (3, 3), r.json()

    # the home persists across stop/start, on the same node (pinned by its local volume)
    for u in users:
        hub.stop_server(u)
    hub.spawn_many(users)
    for u in users:
        assert task_node(manager, service_name(hub, u)) == nodes[u]
        assert get_file(hub, u, tokens[u], "mine.txt") == f"written by {u}"
    # the volume was made by the node, with our owner labels
    on_worker = next(u for u in users if nodes[u] != swarm_bed.node("node1").node_id)
    node = swarm_bed.by_id(nodes[on_worker])
    with docker.APIClient(base_url=node.host, version="auto") as api:
        vol = api.inspect_volume(f"{hub.prefix}-{on_worker}-home")
    assert vol["Labels"]["jupyterhub-ext.owner-name"] == on_worker

    # that node drained for maintenance: its user's start fails at once, naming it
    hub.stop_server(on_worker)
    manager.update_node(
        node.node_id,
        manager.inspect_node(node.node_id)["Version"]["Index"],
        {**manager.inspect_node(node.node_id)["Spec"], "Availability": "drain"},
    )
    try:
        t0 = time.monotonic()
        r = hub.api("POST", f"/users/{on_worker}/server")
        if r.status_code in (201, 202):
            with pytest.raises(HubError):
                hub.wait_ready(on_worker, timeout=30)
        assert time.monotonic() - t0 < 20
        log = hub.log_text()
        assert f"your files are on one node of the cluster, and node {node.name} is drained" in log
        assert hub.server(on_worker) is None
        # the others still work
        other = next(u for u in users if u != on_worker)
        assert get_file(hub, other, tokens[other], "mine.txt") == f"written by {other}"
    finally:
        spec = manager.inspect_node(node.node_id)
        manager.update_node(
            node.node_id, spec["Version"]["Index"], {**spec["Spec"], "Availability": "active"}
        )
    # back in service: the user starts again on that node, with their file
    hub.spawn(on_worker)
    assert task_node(manager, service_name(hub, on_worker)) == node.node_id
    assert get_file(hub, on_worker, tokens[on_worker], "mine.txt") == f"written by {on_worker}"


def test_gpus_are_swarm_generic_resources(make_hub, swarm_bed, manager):
    hub = make_hub(
        swarm_config(
            swarm_bed,
            """
c.ExtSwarmSpawner.gpu_mode = "auto"
c.ExtSwarmSpawner.gpu_groups = ["gpu"]
c.JupyterHub.load_groups = {"gpu": {"users": ["g1", "g2", "g3"]}}
""",
        )
    )
    for u in ("g1", "g2", "g3", "cpu"):
        hub.create_user(u)
    hub.spawn_many(["g1", "g2", "cpu"])
    gpu_node = swarm_bed.node("node2")
    got = {}
    for u in ("g1", "g2"):
        service = service_name(hub, u)
        assert task_node(manager, service) == gpu_node.node_id
        task = next(
            t
            for t in manager.tasks(filters={"service": service})
            if t["Status"]["State"] == "running"
        )
        cid = task["Status"]["ContainerStatus"]["ContainerID"]
        with docker.APIClient(base_url=gpu_node.host, version="auto") as api:
            env = api.inspect_container(cid)["Config"]["Env"]
        got[u] = [e.split("=", 1)[1] for e in env if e.startswith("DOCKER_RESOURCE_NVIDIA-GPU=")]
        assert not any(e.startswith("NVIDIA_VISIBLE_DEVICES=all") for e in env)
    assert sorted(got["g1"] + got["g2"]) == ["GPU-fake0", "GPU-fake1"], got
    # the CPU-only server runs (anywhere), without GPUs
    assert hub.server("cpu")["ready"]

    # a third GPU server: refused at once with the message, no task left pending
    t0 = time.monotonic()
    r = hub.api("POST", "/users/g3/server")
    if r.status_code in (201, 202):
        with pytest.raises(HubError):
            hub.wait_ready("g3", timeout=60)
    assert time.monotonic() - t0 < 45
    assert "No node of the cluster has 1 free GPU(s) now" in hub.log_text()
    assert not manager.services(filters={"name": service_name(hub, "g3")})


def test_a_swarm_hub_with_a_privileged_group_does_not_start(make_hub, swarm_bed):
    hub = make_hub(
        swarm_config(swarm_bed, 'c.ExtSwarmSpawner.docker_privileged_group = "docker-privileged"'),
        start=False,
    )
    with pytest.raises(HubError) as e:
        hub.start()
    assert "Refusing to start rather than start servers without them" in str(e.value)
    assert "docker_privileged_group = 'docker-privileged'" in str(e.value)
