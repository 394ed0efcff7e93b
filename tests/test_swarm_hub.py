"""ExtSwarmSpawner on a real three-node Docker Swarm (tests/swarmbed.py), with a real hub.

The hub runs in the root namespace and reaches servers at their node's
address on the bed's bridge; servers use their node's network
(``network_name = "host"``) and reach the hub at the bridge address.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
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


def refused_start(hub, user: str, options: dict | None = None) -> None:
    """POST a start that must fail (at once, or as soon as the spawn ends)."""
    r = hub.api("POST", f"/users/{user}/server", json=options or {})
    if r.status_code in (201, 202):
        with pytest.raises(HubError):
            hub.wait_ready(user, timeout=60)
    assert hub.server(user) is None


def refused_at_once(
    hub, manager, user: str, message: str, within: float, options: dict | None = None
) -> str:
    """A start refused within ``within`` seconds, ``message`` in the hub's log, and
    no server nor service left behind; returns the log."""
    t0 = time.monotonic()
    refused_start(hub, user, options)
    assert time.monotonic() - t0 < within
    log = hub.log_text()
    assert message in log, log[-3000:]
    assert not manager.services(filters={"name": service_name(hub, user)})
    return log


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
        refused_at_once(
            hub,
            manager,
            on_worker,
            f"your files are on one node of the cluster, and node {node.name} is drained",
            within=20,
        )
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


def running_container(manager, bed, service: str) -> tuple[str, dict]:
    """(node name, docker inspect of the container) of a service's running task."""
    task = next(
        t for t in manager.tasks(filters={"service": service}) if t["Status"]["State"] == "running"
    )
    node = bed.by_id(task["NodeID"])
    with docker.APIClient(base_url=node.host, version="auto") as api:
        return node.name, api.inspect_container(task["Status"]["ContainerStatus"]["ContainerID"])


def swarm_gpus(attrs: dict) -> list[str]:
    """The GPU IDs Swarm handed a container (its DOCKER_RESOURCE_ variable)."""
    for e in attrs["Config"]["Env"]:
        if e.startswith("DOCKER_RESOURCE_NVIDIA-GPU="):
            return sorted(e.split("=", 1)[1].split(","))
    return []


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
    got = {}
    for u in ("g1", "g2"):
        where, attrs = running_container(manager, swarm_bed, service_name(hub, u))
        assert where == "node2"
        got[u] = swarm_gpus(attrs)
        assert not any(e.startswith("NVIDIA_VISIBLE_DEVICES=all") for e in attrs["Config"]["Env"])
    assert sorted(got["g1"] + got["g2"]) == ["GPU-fake0", "GPU-fake1"], got
    # the CPU-only server runs (anywhere), GPUs hidden even from a CUDA image's default
    assert hub.server("cpu")["ready"]
    _, env = running_container(manager, swarm_bed, service_name(hub, "cpu"))
    assert "NVIDIA_VISIBLE_DEVICES=void" in env["Config"]["Env"]
    assert not any(e.startswith("DOCKER_RESOURCE_") for e in env["Config"]["Env"])

    # a third GPU server: refused at once with the message, no task left pending
    refused_at_once(hub, manager, "g3", "No node of the cluster has 1 free GPU(s) now", within=45)


def test_gpu_profiles_reserve_gpus_from_the_swarm_scheduler(make_hub, swarm_bed, manager):
    """Profiles with GPUs on Swarm: a profile's ``gpus`` is the number reserved;
    the scheduler hands out distinct free GPUs; none free -> refused at once."""
    hub = make_hub(
        swarm_config(
            swarm_bed,
            """
c.ExtSwarmSpawner.gpu_mode = "auto"
c.JupyterHub.load_groups = {"gpu": {"users": ["gina", "gus"]}}
c.ExtSwarmSpawner.profiles = [
    {"slug": "cpu", "display_name": "CPU only", "default": True},
    {"slug": "two-gpus", "display_name": "2 GPUs", "gpus": 2, "groups": ["gpu"]},
    {"slug": "one-gpu", "display_name": "1 GPU", "gpus": 1, "groups": ["gpu"]},
]
""",
        )
    )
    for u in ("gina", "gus", "carl"):
        hub.create_user(u)
    # attacker: a user outside the group asks for the GPU profile
    r = hub.api("POST", "/users/carl/server", json={"profile": "two-gpus"})
    assert r.status_code == 403, r.text
    assert hub.server("carl") is None

    hub.spawn("gina", options={"profile": "two-gpus"})
    where, attrs = running_container(manager, swarm_bed, service_name(hub, "gina"))
    assert where == "node2" and swarm_gpus(attrs) == ["GPU-fake0", "GPU-fake1"]
    assert attrs["Config"]["Labels"]["jupyterhub-ext.profile"] == "two-gpus"
    # both GPUs are hers: a one-GPU server is refused at once, nothing left pending
    refused_at_once(
        hub,
        manager,
        "gus",
        "No node of the cluster has 1 free GPU(s) now",
        within=45,
        options={"profile": "one-gpu"},
    )
    # the CPU profile (the default) runs without any GPU
    hub.spawn("carl")
    _, attrs = running_container(manager, swarm_bed, service_name(hub, "carl"))
    assert swarm_gpus(attrs) == []
    assert "NVIDIA_VISIBLE_DEVICES=void" in attrs["Config"]["Env"]
    assert attrs["Config"]["Labels"]["jupyterhub-ext.profile"] == "cpu"

    # once gina stops, gus gets one GPU of the two
    hub.stop_server("gina")
    hub.spawn("gus", options={"profile": "one-gpu"})
    where, attrs = running_container(manager, swarm_bed, service_name(hub, "gus"))
    assert where == "node2" and len(swarm_gpus(attrs)) == 1
    assert swarm_gpus(attrs)[0] in ("GPU-fake0", "GPU-fake1")


def test_a_swarm_hub_with_a_privileged_group_does_not_start(make_hub, swarm_bed):
    hub = make_hub(
        swarm_config(swarm_bed, 'c.ExtSwarmSpawner.docker_privileged_group = "docker-privileged"'),
        start=False,
    )
    with pytest.raises(HubError) as e:
        hub.start()
    assert "Refusing to start rather than start servers without them" in str(e.value)
    assert "docker_privileged_group = 'docker-privileged'" in str(e.value)


def set_availability(api: docker.APIClient, node_id: str, availability: str) -> None:
    spec = api.inspect_node(node_id)
    api.update_node(
        node_id, spec["Version"]["Index"], {**spec["Spec"], "Availability": availability}
    )


def wait_job(hub, name: str, job_id: str, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = hub.api("GET", f"/users/{name}/rename", params={"id": job_id})
        if r.status_code == 200 and r.json()["state"] in ("done", "failed", "rolled-back"):
            return r.json()
        time.sleep(0.5)
    raise AssertionError(f"rename {job_id} did not finish")


def test_reset_and_rename_act_on_the_worker_that_holds_the_volumes(make_hub, swarm_bed, manager):
    hub = make_hub(
        swarm_config(
            swarm_bed,
            """
c.ExtSwarmSpawner.swarm_node_socket = "/run/jhx-swarm/{node}/docker.sock"
c.ExtSwarmSpawner.remove_volumes_on_delete = True
""",
        )
    )
    p = hub.prefix
    # first start on a worker: the manager takes no new task meanwhile
    manager_id = swarm_bed.node("node1").node_id
    hub.create_user("wanda")
    set_availability(manager, manager_id, "pause")
    try:
        hub.spawn("wanda")
    finally:
        set_availability(manager, manager_id, "active")
    node = swarm_bed.by_id(task_node(manager, service_name(hub, "wanda")))
    assert node.name != "node1"
    token = hub.token_for("wanda")
    put_file(hub, "wanda", token, "keep.txt", "kept through reset and rename")
    hub.stop_server("wanda")
    worker = docker.APIClient(base_url=node.host, version="auto")
    assert worker.inspect_volume(f"{p}-wanda-home")
    # a decoy of another user on that node, and the manager's engine untouched
    worker.create_volume(f"{p}-other-home", labels={"jupyterhub-ext.owner-name": "other"})

    # reset: the volume on the worker goes, exactly that one
    r = requests.delete(
        f"{hub.url}/hub/api/users/wanda/manage-volumes",
        headers={"Authorization": f"token {token}"},
        json={"volumes": ["home"]},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    assert [v["status"] for v in r.json()["volumes"]] == ["reset"], r.json()
    with pytest.raises(docker.errors.NotFound):
        worker.inspect_volume(f"{p}-wanda-home")
    assert worker.inspect_volume(f"{p}-other-home")
    # started again: on the same node, an empty home
    hub.spawn("wanda")
    assert task_node(manager, service_name(hub, "wanda")) == node.node_id
    r = requests.get(
        f"{hub.url}/user/wanda/api/contents/keep.txt",
        headers={"Authorization": f"token {token}"},
        timeout=30,
    )
    assert r.status_code == 404
    put_file(hub, "wanda", token, "keep.txt", "kept through the rename")
    hub.stop_server("wanda")

    # rename: login and data move, on the worker
    r = hub.api("PATCH", "/users/wanda/rename", json={"new_name": "wendy"})
    assert r.status_code == 202, r.text
    job = wait_job(hub, "wendy", r.json()["id"])
    assert job["state"] == "done", job
    renamed = worker.inspect_volume(f"{p}-wendy-home")["Labels"]
    assert renamed["jupyterhub-ext.owner-name"] == "wendy"
    assert renamed["jupyterhub-ext.node-id"] == node.node_id
    assert renamed["jupyterhub-ext.node-hostname"] == node.name
    with pytest.raises(docker.errors.NotFound):
        worker.inspect_volume(f"{p}-wanda-home")
    hub.spawn("wendy")
    assert task_node(manager, service_name(hub, "wendy")) == node.node_id
    wendy = hub.token_for("wendy")
    assert get_file(hub, "wendy", wendy, "keep.txt") == "kept through the rename"
    hub.stop_server("wendy")
    # deleting the user removes their volume on the worker, and only theirs
    r = hub.api("DELETE", "/users/wendy")
    assert r.status_code == 204, r.text
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            worker.inspect_volume(f"{p}-wendy-home")
        except docker.errors.NotFound:
            break
        time.sleep(0.5)
    else:
        raise AssertionError("the deleted user's volume is still on the worker")
    assert worker.inspect_volume(f"{p}-other-home")
    worker.remove_volume(f"{p}-other-home")
    worker.close()


def node_manifest(node, image: str, volume: str) -> dict:
    """treeverify's manifest of a volume on one node (checksums, modes, owners, links)."""
    from hubctl import ROOT

    src = (ROOT / "jupyterhub_ext" / "rename" / "treeverify.py").read_text()
    with docker.APIClient(base_url=node.host, version="auto") as api:
        api.inspect_volume(volume)  # never let the mount create it
        c = api.create_container(
            image,
            entrypoint=["python3", "-c", src],
            command=["manifest", "/v"],
            user="0:0",
            host_config=api.create_host_config(
                network_mode="none", binds={volume: {"bind": "/v", "mode": "ro"}}
            ),
        )
        try:
            api.start(c["Id"])
            assert api.wait(c["Id"], timeout=120)["StatusCode"] == 0
            return json.loads(api.logs(c["Id"], stdout=True, stderr=False))
        finally:
            api.remove_container(c["Id"], force=True)


def test_admin_moves_a_user_to_another_node(make_hub, swarm_bed, manager):
    hub = make_hub(
        swarm_config(
            swarm_bed, 'c.ExtSwarmSpawner.swarm_node_socket = "/run/jhx-swarm/{node}/docker.sock"'
        )
    )
    p = hub.prefix
    hub.create_user("mo")
    hub.create_user("eve")
    hub.spawn("mo")
    source = swarm_bed.by_id(task_node(manager, service_name(hub, "mo")))
    target = next(n for n in swarm_bed.nodes if n.node_id != source.node_id)
    # files with modes, a symlink and a hard link, made in mo's own container
    task = next(
        t
        for t in manager.tasks(filters={"service": service_name(hub, "mo")})
        if t["Status"]["State"] == "running"
    )
    with docker.APIClient(base_url=source.host, version="auto") as api:
        ex = api.exec_create(
            task["Status"]["ContainerStatus"]["ContainerID"],
            [
                "sh",
                "-c",
                "cd ~ && echo data > f && chmod 640 f && ln -s f link && mkdir d "
                "&& ln f d/hard && head -c 200000 /dev/urandom > d/blob",
            ],
        )
        api.exec_start(ex["Id"])
        assert api.exec_inspect(ex["Id"])["ExitCode"] == 0

    # refused: while it runs; by the user herself; to a node that does not exist
    r = hub.api("POST", "/users/mo/move-volumes", json={"node": target.name})
    assert r.status_code == 409 and "Stop the server" in r.json()["message"], r.text
    hub.stop_server("mo")
    before = node_manifest(source, swarm_bed.image, f"{p}-mo-home")
    mine = requests.post(
        f"{hub.url}/hub/api/users/mo/move-volumes",
        headers={"Authorization": f"token {hub.token_for('mo')}"},
        json={"node": target.name},
        timeout=30,
    )
    assert mine.status_code in (403, 404), mine.text
    other = requests.post(
        f"{hub.url}/hub/api/users/mo/move-volumes",
        headers={"Authorization": f"token {hub.token_for('eve')}"},
        json={"node": target.name},
        timeout=30,
    )
    assert other.status_code in (403, 404), other.text
    r = hub.api("POST", "/users/mo/move-volumes", json={"node": "node9"})
    assert r.status_code == 400 and "no node 'node9'" in r.json()["message"], r.text

    # the source drained: the start is refused, and so is a move (the copy runs there)
    set_availability(manager, source.node_id, "drain")
    try:
        r = hub.api("POST", "/users/mo/move-volumes", json={"node": target.name})
        assert r.status_code == 409 and "set it active while you move" in r.json()["message"]
    finally:
        set_availability(manager, source.node_id, "active")

    r = hub.api("POST", "/users/mo/move-volumes", json={"node": target.name}, timeout=300)
    assert r.status_code == 200, r.text
    assert r.json() == {"from": source.name, "to": target.name, "volumes": [f"{p}-mo-home"]}
    assert node_manifest(target, swarm_bed.image, f"{p}-mo-home") == before
    with docker.APIClient(base_url=source.host, version="auto") as api:
        with pytest.raises(docker.errors.NotFound):
            api.inspect_volume(f"{p}-mo-home")
    with docker.APIClient(base_url=target.host, version="auto") as api:
        labels = api.inspect_volume(f"{p}-mo-home")["Labels"]
    # the copy says where it lives now (the original's labels named the source)
    assert labels["jupyterhub-ext.node-id"] == target.node_id
    assert labels["jupyterhub-ext.node-hostname"] == target.name
    assert labels["jupyterhub-ext.owner-name"] == "mo"
    assert 'action="move-volumes"' in hub.log_text()
    # the next start goes to the new node, with the files
    hub.spawn("mo")
    assert task_node(manager, service_name(hub, "mo")) == target.node_id
    assert get_file(hub, "mo", hub.token_for("mo"), "d/hard") == "data\n"


def test_a_stopped_node_refuses_its_users_at_once(make_hub, swarm_bed, manager):
    from hubctl import ROOT

    script = str(ROOT / "scripts" / "swarm-testbed.sh")
    hub = make_hub(swarm_config(swarm_bed))
    node3 = swarm_bed.node("node3")
    for u in ("ann", "ben"):
        hub.create_user(u)
    # ann's data on node3, ben's elsewhere (the other nodes take no new task meanwhile)
    others = [n for n in swarm_bed.nodes if n.name != "node3"]
    for n in others:
        set_availability(manager, n.node_id, "pause")
    try:
        hub.spawn("ann")
    finally:
        for n in others:
            set_availability(manager, n.node_id, "active")
    assert task_node(manager, service_name(hub, "ann")) == node3.node_id
    set_availability(manager, node3.node_id, "pause")
    try:
        hub.spawn("ben")
    finally:
        set_availability(manager, node3.node_id, "active")
    hub.stop_server("ann")

    subprocess.run(["bash", script, "stop-node", "3"], check=True, timeout=60)
    try:
        deadline = time.monotonic() + 60
        while manager.inspect_node(node3.node_id)["Status"]["State"] != "down":
            assert time.monotonic() < deadline, "the manager never saw node3 down"
            time.sleep(0.5)
        refused_at_once(
            hub,
            manager,
            "ann",
            "your files are on one node of the cluster, and node node3 is down",
            within=15,
        )
        # the others still work: ben's server answers, and starts again
        token = hub.token_for("ben")
        put_file(hub, "ben", token, "still.txt", "here")
        hub.stop_server("ben")
        hub.spawn("ben")
        assert get_file(hub, "ben", token, "still.txt") == "here"
    finally:
        subprocess.run(["bash", script, "start-node", "3"], check=True, timeout=120)
        deadline = time.monotonic() + 60
        while manager.inspect_node(node3.node_id)["Status"]["State"] != "ready":
            assert time.monotonic() < deadline, "node3 did not come back"
            time.sleep(0.5)
    # back: ann starts on node3 again
    hub.spawn("ann")
    assert task_node(manager, service_name(hub, "ann")) == node3.node_id


def start_on_a_worker(hub, swarm_bed, manager, user: str):
    """Start ``user``'s first server on a worker (the manager takes no task meanwhile)."""
    manager_id = swarm_bed.node("node1").node_id
    hub.create_user(user)
    set_availability(manager, manager_id, "pause")
    try:
        hub.spawn(user)
    finally:
        set_availability(manager, manager_id, "active")
    node = swarm_bed.by_id(task_node(manager, service_name(hub, user)))
    assert node.name != "node1"
    return node


def test_a_planted_volume_on_the_pinned_node_is_refused_at_start(make_hub, swarm_bed, manager):
    """An attacker with a Docker socket on the victim's node plants a volume of her name."""
    hub = make_hub(swarm_config(swarm_bed))
    p = hub.prefix
    node = start_on_a_worker(hub, swarm_bed, manager, "vic")
    token = hub.token_for("vic")
    put_file(hub, "vic", token, "secret.txt", "mine")
    hub.stop_server("vic")
    # the victim resets her home: the name is free on the node, the node stays hers
    r = requests.delete(
        f"{hub.url}/hub/api/users/vic/manage-volumes",
        headers={"Authorization": f"token {token}"},
        json={"volumes": ["home"]},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    name = f"{p}-vic-home"
    worker = docker.APIClient(base_url=node.host, version="auto")
    try:
        for labels, why in (
            (
                {
                    "jupyterhub-ext.managed": "true",
                    "jupyterhub-ext.owner-id": "999",
                    "jupyterhub-ext.owner-name": "mallory",
                    "jupyterhub-ext.volume-key": "home",
                },
                "belongs to another user (owner id 999, name 'mallory'), not to 'vic'",
            ),
            ({}, "exists without owner labels"),
        ):
            worker.create_volume(name, labels=labels)
            refused_start(hub, "vic")
            log = hub.log_text()
            assert f"Cannot start: on node {node.name}, volume {name} {why}" in log, log[-3000:]
            assert "Nothing was mounted" in log
            # nothing was created: no service, no container mounting it, volume as planted
            assert not manager.services(filters={"name": service_name(hub, "vic")})
            assert not worker.containers(all=True, filters={"volume": name})
            assert (worker.inspect_volume(name)["Labels"] or {}) == labels
            worker.remove_volume(name)
        # the name free again: the normal start works, on her node, with our labels
        hub.spawn("vic")
        assert task_node(manager, service_name(hub, "vic")) == node.node_id
        assert worker.inspect_volume(name)["Labels"]["jupyterhub-ext.owner-name"] == "vic"
        # and a restart with her own volume in place passes the check
        hub.stop_server("vic")
        hub.spawn("vic")
        assert task_node(manager, service_name(hub, "vic")) == node.node_id
        checks = [
            line for line in hub.log_text().splitlines() if "Checked 1 volume(s) of vic" in line
        ]
        assert len(checks) >= 2, checks
        print("ownership check on the node:", [line.rsplit(" in ", 1)[-1] for line in checks])
    finally:
        worker.close()


def run_in_task(node, api_manager: docker.APIClient, service: str, script: str) -> None:
    task = next(
        t
        for t in api_manager.tasks(filters={"service": service})
        if t["Status"]["State"] == "running"
    )
    with docker.APIClient(base_url=node.host, version="auto") as api:
        ex = api.exec_create(task["Status"]["ContainerStatus"]["ContainerID"], ["sh", "-c", script])
        out = api.exec_start(ex["Id"])
        assert api.exec_inspect(ex["Id"])["ExitCode"] == 0, out


def test_volume_sizes_and_quotas_are_measured_on_the_worker(make_hub, swarm_bed, manager):
    hub = make_hub(
        swarm_config(
            swarm_bed,
            """
c.UsageConfig.scan_interval = 2
c.UsageConfig.volume_scan_interval = 10
c.ExtSwarmSpawner.volume_set = {
    "home": {
        "name": "%PREFIX%-{username}-home",
        "mount": "/home/jovyan",
        "hard_limit": "20MB",
        "on_hard_limit": "refuse",
    },
}
""",
        ),
        start=False,
    )
    hub.config_file.write_text(hub.config_file.read_text().replace("%PREFIX%", hub.prefix))
    hub.start()
    node = start_on_a_worker(hub, swarm_bed, manager, "quin")
    token = hub.token_for("quin")
    run_in_task(
        node, manager, service_name(hub, "quin"), "head -c 30000000 /dev/zero > ~/big.bin && sync"
    )

    def quota() -> dict:
        r = requests.get(
            f"{hub.url}/hub/api/users/quin/manage-volumes",
            headers={"Authorization": f"token {token}"},
            timeout=30,
        )
        r.raise_for_status()
        return r.json()["quota"]["home"]

    deadline = time.monotonic() + 90
    while quota()["state"] != "hard":
        assert time.monotonic() < deadline, (quota(), hub.log_tail(40))
        time.sleep(1)
    assert quota()["size"] >= 30_000_000 and quota()["refuses_start"]
    # the servers page's API shows the size measured on the worker
    hub.create_user("admin")
    r = requests.get(
        f"{hub.url}/hub/api/usage/servers",
        headers={"Authorization": f"token {hub.token_for('admin')}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    rows = r.json()["servers"]
    row = next(r for r in rows if r["user"] == "quin")
    assert row["volumes"]["home"] >= 30_000_000, row
    # the manager's engine does not hold that volume: the size came from the node
    with pytest.raises(docker.errors.NotFound):
        manager.inspect_volume(f"{hub.prefix}-quin-home")
    # over the hard limit with refuse: the next start is refused, on Swarm too
    hub.stop_server("quin")
    refused_start(hub, "quin")
    assert "your server cannot start until it is smaller" in hub.log_text()
    assert not manager.services(filters={"name": service_name(hub, "quin")})


def volume_root(node, image: str, volume: str) -> str:
    """``uid:gid mode`` of a volume's root directory, read on its node."""
    with docker.APIClient(base_url=node.host, version="auto") as api:
        api.inspect_volume(volume)  # never let the mount create it
        c = api.create_container(
            image,
            entrypoint=["stat", "-c", "%u:%g %a", "/v"],
            user="0:0",
            host_config=api.create_host_config(network_mode="none", binds={volume: "/v"}),
        )
        try:
            api.start(c["Id"])
            assert api.wait(c["Id"], timeout=60)["StatusCode"] == 0
            return api.logs(c["Id"], stdout=True, stderr=False).decode().strip()
        finally:
            api.remove_container(c["Id"], force=True)


def test_volume_permissions_and_first_start_ownership_on_the_node(make_hub, swarm_bed, manager):
    hub = make_hub(
        swarm_config(
            swarm_bed,
            """
c.ExtSwarmSpawner.volume_set = {
    "home": {"name": "%PREFIX%-{username}-home", "mount": "/home/jovyan"},
    "team": {"name": "%PREFIX%-team", "mount": "/srv/team", "scope": "shared"},
    "scratch": {
        "name": "%PREFIX%-{username}-scratch", "mount": "/srv/scratch", "mode": 0o700,
    },
}
""",
        ),
        start=False,
    )
    hub.config_file.write_text(hub.config_file.read_text().replace("%PREFIX%", hub.prefix))
    hub.start()
    p = hub.prefix
    # the first start, on a worker: the node creates the volumes, the hub then
    # gives them the entry's owner, group and mode there
    node = start_on_a_worker(hub, swarm_bed, manager, "sia")
    assert volume_root(node, swarm_bed.image, f"{p}-team") == "1000:100 2775"
    assert volume_root(node, swarm_bed.image, f"{p}-sia-scratch").endswith(" 700")
    run_in_task(node, manager, service_name(hub, "sia"), "touch /srv/team/from-sia")
    # a restart with the volumes in place: checked, not changed
    hub.stop_server("sia")
    with docker.APIClient(base_url=node.host, version="auto") as api:
        # the node makes it anew at the next start (once the old task's container is gone)
        deadline = time.monotonic() + 30
        while True:
            try:
                api.remove_volume(f"{p}-sia-scratch")
                break
            except docker.errors.APIError as e:
                assert e.status_code == 409 and time.monotonic() < deadline, e
                time.sleep(0.5)
    hub.spawn("sia")
    assert task_node(manager, service_name(hub, "sia")) == node.node_id
    assert volume_root(node, swarm_bed.image, f"{p}-sia-scratch").endswith(" 700")
    assert volume_root(node, swarm_bed.image, f"{p}-team") == "1000:100 2775"

    # the first start of another user, on a node where an attacker planted a
    # volume of her name: refused once placed, the service gone
    node3 = swarm_bed.node("node3")
    with docker.APIClient(base_url=node3.host, version="auto") as api:
        api.create_volume(
            f"{p}-pia-home",
            labels={"jupyterhub-ext.managed": "true", "jupyterhub-ext.owner-id": "999"},
        )
    hub.create_user("pia")
    others = [n for n in swarm_bed.nodes if n.name != "node3"]
    for n in others:
        set_availability(manager, n.node_id, "pause")
    try:
        refused_start(hub, "pia")
    finally:
        for n in others:
            set_availability(manager, n.node_id, "active")
    log = hub.log_text()
    assert (
        f"Cannot start: on node node3, volume {p}-pia-home belongs to another user "
        "(owner id 999, name 'nobody recorded'), not to 'pia'. The server was stopped"
    ) in log, log[-3000:]
    assert not manager.services(filters={"name": service_name(hub, "pia")})
    # none of her data is on node3: her next start is placed anew (node3 kept out)
    set_availability(manager, node3.node_id, "pause")
    try:
        hub.spawn("pia")
    finally:
        set_availability(manager, node3.node_id, "active")
    assert task_node(manager, service_name(hub, "pia")) != node3.node_id


def test_a_move_past_its_deadline_keeps_the_originals(make_hub, swarm_bed, manager):
    hub = make_hub(swarm_config(swarm_bed, "c.ExtSwarmSpawner.swarm_move_timeout = 3"))
    p = hub.prefix
    hub.create_user("tim")
    hub.spawn("tim")
    source = swarm_bed.by_id(task_node(manager, service_name(hub, "tim")))
    target = next(n for n in swarm_bed.nodes if n.node_id != source.node_id)
    token = hub.token_for("tim")
    put_file(hub, "tim", token, "stay.txt", "still here")
    hub.stop_server("tim")

    t0 = time.monotonic()
    r = hub.api("POST", "/users/tim/move-volumes", json={"node": target.name}, timeout=120)
    took = time.monotonic() - t0
    assert r.status_code == 504, r.text
    assert "did not finish within 3 s (c.ExtSwarmSpawner.swarm_move_timeout)" in r.json()["message"]
    assert f"originals kept on {source.name}" in r.json()["message"]
    assert took < 30, took  # the deadline, then the clean-up, not the whole copy
    print(f"move refused after {took:.1f}s")
    # no copy left on the target; the original where it was; the next start goes there
    with docker.APIClient(base_url=target.host, version="auto") as api:
        with pytest.raises(docker.errors.NotFound):
            api.inspect_volume(f"{p}-tim-home")
    # the copy's helpers are gone, on both nodes
    for node in (source, target):
        with docker.APIClient(base_url=node.host, version="auto") as api:
            left = api.containers(all=True, filters={"name": f"{p}-move-"})
            assert not left, left
    hub.spawn("tim")
    assert task_node(manager, service_name(hub, "tim")) == source.node_id
    assert get_file(hub, "tim", token, "stay.txt") == "still here"


def test_node_engine_carries_large_answers_and_reaps_its_job_containers(
    swarm_bed, manager, monkeypatch
):
    from jupyterhub_ext.engine import nodejob

    node3 = swarm_bed.node("node3")
    prefix = f"jhxtest-nodeengine-{int(time.time())}"
    engine = nodejob.NodeEngine(
        manager,
        node3.node_id,
        image=swarm_bed.image,
        socket_path="/run/jhx-swarm/{node}/docker.sock",
        name_prefix=prefix,
    )
    big = "x" * 300_000  # far past the 16 KiB at which Docker splits a log line
    with docker.APIClient(base_url=node3.host, version="auto") as api:
        api.create_volume(f"{prefix}-big", labels={"big": big})
        try:
            assert engine.inspect_volume(f"{prefix}-big")["Labels"]["big"] == big
            sizes = engine.df()
            assert set(sizes) == {"Volumes"}
            assert f"{prefix}-big" in {v["Name"] for v in sizes["Volumes"]}
            # each job removes the exited containers earlier jobs left on the node
            monkeypatch.setattr(nodejob, "REAP_AFTER_SECONDS", 0)
            for _ in range(3):
                engine.inspect_volume(f"{prefix}-big")
            left = api.containers(all=True, filters={"name": prefix, "status": "exited"})
            assert len(left) <= 1, [c["Names"] for c in left]
        finally:
            api.remove_volume(f"{prefix}-big")


def forget_recorded_node(hub, user: str) -> None:
    """What a restored hub database looks like: the user's spawner state names no node."""
    hub.stop()
    db = sqlite3.connect(hub.workdir / "jupyterhub.sqlite")
    try:
        rows = db.execute(
            "SELECT s.id, s.state FROM spawners s JOIN users u ON s.user_id = u.id "
            "WHERE u.name = ?",
            (user,),
        ).fetchall()
        assert rows
        for sid, state in rows:
            st = json.loads(state or "{}")
            st.pop("swarm_node", None)
            db.execute("UPDATE spawners SET state = ? WHERE id = ?", (json.dumps(st), sid))
        db.commit()
    finally:
        db.close()
    hub.start()


def lookups(hub, user: str) -> list[str]:
    return [
        line for line in hub.log_text().splitlines() if f"Looked for the volumes of {user} " in line
    ]


def test_a_start_with_no_recorded_node_goes_where_the_users_volumes_are(
    make_hub, swarm_bed, manager
):
    hub = make_hub(swarm_config(swarm_bed))
    name = f"{hub.prefix}-rhea-home"
    node = start_on_a_worker(hub, swarm_bed, manager, "rhea")
    # the node wrote its own ID and hostname into the volume it made (Swarm's templates)
    with docker.APIClient(base_url=node.host, version="auto") as api:
        labels = api.inspect_volume(name)["Labels"]
    assert labels["jupyterhub-ext.node-id"] == node.node_id, labels
    assert labels["jupyterhub-ext.node-hostname"] == node.name, labels
    token = hub.token_for("rhea")
    put_file(hub, "rhea", token, "kept.txt", "on my node")
    hub.stop_server("rhea")

    # the hub's database restored from before her first start: no node recorded
    forget_recorded_node(hub, "rhea")
    hub.spawn("rhea")
    assert task_node(manager, service_name(hub, "rhea")) == node.node_id
    assert get_file(hub, "rhea", token, "kept.txt") == "on my node"
    found = lookups(hub, "rhea")
    assert found and found[-1].endswith(f": {node.name}"), found
    print("looking on every node:", [line.split(" in ")[-1] for line in found])
    hub.stop_server("rhea")

    # a copy of her volume on a second node, and another user's of that name on the
    # third: the first makes the start ambiguous (refused, naming both), the
    # second is not hers (the ownership rule) and is not named
    second, third = (n for n in swarm_bed.nodes if n.node_id != node.node_id)
    planted = [
        (second, {**labels, "jupyterhub-ext.node-id": second.node_id}),
        (third, {**labels, "jupyterhub-ext.owner-id": "999", "jupyterhub-ext.owner-name": "x"}),
    ]
    for n, lab in planted:
        with docker.APIClient(base_url=n.host, version="auto") as api:
            api.create_volume(name, labels=lab)
    try:
        forget_recorded_node(hub, "rhea")
        both = ", ".join(sorted([node.name, second.name]))
        refused_at_once(
            hub,
            manager,
            "rhea",
            f"Cannot start: volumes of yours exist on more than one node of the cluster ({both})",
            within=30,
        )
    finally:
        for n, _lab in planted:
            with docker.APIClient(base_url=n.host, version="auto") as api:
                api.remove_volume(name)
    # the copy gone: her start finds her node again
    hub.spawn("rhea")
    assert task_node(manager, service_name(hub, "rhea")) == node.node_id
    assert get_file(hub, "rhea", token, "kept.txt") == "on my node"


SLOW_SERVICE_CREATE = """
import time

from jupyterhub_ext.swarm.spawner import ExtSwarmSpawner


class SlowManagerSpawner(ExtSwarmSpawner):
    # The manager takes 4 s to create "slow"'s service, as a loaded manager
    # does; JupyterHub gives up on that start after 2 s and cancels it while
    # the create call goes on in its pool thread.
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.user.name == "slow":
            self.start_timeout = 2

    async def docker(self, method, *args, **kwargs):
        if method != "create_service" or self.user.name != "slow":
            return await super().docker(method, *args, **kwargs)
        client = await self.docker_client()

        def create():
            time.sleep(4)
            made = client.create_service(*args, **kwargs)
            self.log.info("slow: the manager made service %s", made["ID"])
            return made

        return await self.run_in_pool(create)

    async def run_in_pool(self, fn):
        from jupyterhub_ext.engine import dockerpool

        return await dockerpool.run(fn, pool_size=self.docker_pool_size)


c.JupyterHub.spawner_class = SlowManagerSpawner
c.JupyterHub.tornado_settings = {"slow_spawn_timeout": 0}
"""


def test_a_start_cancelled_during_its_service_create_leaves_no_service(
    make_hub, swarm_bed, manager
):
    """JupyterHub cancels the start (start_timeout) while the manager is still making
    the service: once the call returns, the service nobody supervises is removed."""
    hub = make_hub(swarm_config(swarm_bed, SLOW_SERVICE_CREATE))
    hub.create_user("slow")
    refused_start(hub, "slow")
    deadline = time.monotonic() + 60
    while "slow: the manager made service" not in hub.log_text():
        assert time.monotonic() < deadline, hub.log_tail()
        time.sleep(0.2)
    while manager.services(filters={"name": service_name(hub, "slow")}):
        assert time.monotonic() < deadline, "the abandoned service is still there"
        time.sleep(0.2)
    assert "cancelled while the engine was creating its service" in hub.log_text()
    # and it stays gone (nothing re-creates it), with no task left on any node
    time.sleep(3)
    assert not manager.services(filters={"name": service_name(hub, "slow")})
    for node in swarm_bed.nodes:
        with docker.APIClient(base_url=node.host, version="auto") as api:
            assert not api.containers(all=True, filters={"name": service_name(hub, "slow")})


def test_cpu_and_memory_of_a_server_on_a_worker_are_on_the_servers_page(
    make_hub, swarm_bed, manager
):
    """The usage scan measures servers on other nodes with one job per node per scan
    (never per page view): memory in use, its limit and CPU time."""
    hub = make_hub(
        swarm_config(
            swarm_bed,
            'c.UsageConfig.scan_interval = 2\nc.ExtSwarmSpawner.mem_limit = "512M"\n',
        )
    )
    node = start_on_a_worker(hub, swarm_bed, manager, "ivy")
    # 100 MB held, and a second of CPU burnt, inside her container on the worker
    run_in_task(
        node,
        manager,
        service_name(hub, "ivy"),
        "nohup python3 -c 'import time\nb = bytearray(100_000_000)\n"
        "t = time.time()\nwhile time.time() < t + 1.5: pass\ntime.sleep(600)' "
        ">/dev/null 2>&1 &",
    )
    task = next(
        t
        for t in manager.tasks(filters={"service": service_name(hub, "ivy")})
        if t["Status"]["State"] == "running"
    )
    hub.create_user("admin", admin=True)
    admin = hub.token_for("admin")

    def row() -> dict:
        r = requests.get(
            f"{hub.url}/hub/api/usage/servers",
            headers={"Authorization": f"token {admin}"},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        # {} until the first scan that saw her server
        return next((x for x in r.json()["servers"] if x["user"] == "ivy"), {})

    deadline = time.monotonic() + 90
    while (got := row()).get("memory_bytes") is None or got["memory_bytes"] < 100_000_000:
        assert time.monotonic() < deadline, (got, hub.log_tail(40))
        time.sleep(1)
    assert got["memory_limit_bytes"] == 512 * 1024 * 1024, got
    assert got["cpu_seconds"] is not None and got["cpu_seconds"] >= 1.0, got
    assert not got["stale"], got
    assert got["container"] == task["Status"]["ContainerStatus"]["ContainerID"][:12]
    # the manager's engine has no such container: the numbers came from the worker
    with pytest.raises(docker.errors.NotFound):
        manager.inspect_container(task["Status"]["ContainerStatus"]["ContainerID"])
    assert "server usage on node" not in hub.log_text()
