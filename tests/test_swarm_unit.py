"""Unit tests of the container -> Swarm service translation (swarm.servicespec)."""

from __future__ import annotations

import pytest

from jupyterhub_ext.swarm import servicespec as S

HOST_CONFIG = {
    "Memory": 2 * 1024**3,
    "MemoryReservation": 1024**3,
    "CpuQuota": 150_000,
    "CpuPeriod": 100_000,
    "PidsLimit": 512,
    "CapAdd": ["SYS_PTRACE"],
    "GroupAdd": ["999"],
    "Ulimits": [{"Name": "nofile", "Soft": 1024, "Hard": 2048}],
    "NetworkMode": "bridge",
    "Binds": ["/var/run/docker.sock:/var/run/docker.sock:rw", "/srv/data:/data:ro"],
    "Mounts": [{"Target": "/home/jovyan", "Source": "jh-alice-home", "Type": "volume"}],
    "AutoRemove": True,
    "PortBindings": {"8888/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]},
}
CREATE = {
    "image": "jhext/singleuser:1",
    "environment": {"JUPYTERHUB_USER": "alice", "A": "1"},
    "command": ["jupyterhub-singleuser", "--port=8888"],
    "labels": {"jupyterhub-ext.owner-id": "7"},
    "name": "jupyter-alice",
    "host_config": HOST_CONFIG,
}


def test_a_container_becomes_a_service_with_the_same_settings():
    opts = {"jh-alice-home": S.volume_options({"jupyterhub-ext.owner-id": "7"})}
    out = S.service_create_kwargs(
        CREATE,
        name="jupyter-alice",
        service_labels={"jupyterhub-ext.owner-id": "7"},
        volume_options=opts,
        network="jhext-swarm",
        constraints=["node.id==abc", ""],
    )
    task = out["task_template"]
    spec = task["ContainerSpec"]
    assert spec["Image"] == "jhext/singleuser:1"
    assert sorted(spec["Env"]) == ["A=1", "JUPYTERHUB_USER=alice"]
    assert spec["Args"] == ["jupyterhub-singleuser", "--port=8888"]
    assert spec["CapabilityAdd"] == ["SYS_PTRACE"] and spec["Groups"] == ["999"]
    assert spec["Ulimits"] == HOST_CONFIG["Ulimits"]
    assert spec["Labels"] == {"jupyterhub-ext.owner-id": "7"}
    # a named volume stays a volume (not a bind, DockerSpawner#536), with our labels
    home = next(m for m in spec["Mounts"] if m["Target"] == "/home/jovyan")
    assert home["Type"] == "volume" and home["Source"] == "jh-alice-home"
    assert home["VolumeOptions"] == {"Labels": {"jupyterhub-ext.owner-id": "7"}}
    sock = next(m for m in spec["Mounts"] if m["Target"] == "/var/run/docker.sock")
    assert sock == {
        "Type": "bind",
        "Source": "/var/run/docker.sock",
        "Target": "/var/run/docker.sock",
        "ReadOnly": False,
    }
    assert next(m for m in spec["Mounts"] if m["Target"] == "/data")["ReadOnly"] is True
    assert task["Resources"] == {
        "Limits": {"MemoryBytes": 2 * 1024**3, "NanoCPUs": 1_500_000_000, "Pids": 512},
        "Reservations": {"MemoryBytes": 1024**3},
    }
    assert task["Placement"] == {"Constraints": ["node.id==abc"]}
    assert task["Networks"] == [{"Target": "jhext-swarm"}]
    assert task["RestartPolicy"]["Condition"] == "none"
    assert out["endpoint_spec"] == {"Mode": "dnsrr"}
    assert out["name"] == "jupyter-alice" and out["labels"] == {"jupyterhub-ext.owner-id": "7"}


def test_host_port_endpoint_and_gpus_as_generic_resources():
    out = S.service_create_kwargs(
        CREATE, name="s", service_labels={}, endpoint="host-port", port=8888, gpus=2
    )
    assert out["endpoint_spec"]["Ports"] == [
        {"Protocol": "tcp", "TargetPort": 8888, "PublishMode": "host"}
    ]
    assert out["task_template"]["Resources"]["Reservations"]["GenericResources"] == [
        {"DiscreteResourceSpec": {"Kind": "NVIDIA-GPU", "Value": 2}}
    ]
    with pytest.raises(S.SwarmSpecError, match="dnsrr"):
        S.service_create_kwargs(CREATE, name="s", service_labels={}, endpoint="ingress")


@pytest.mark.parametrize(
    "key,value,words",
    [
        ("Privileged", True, "privileged"),
        ("Devices", [{"PathOnHost": "/dev/fuse"}], "devices"),
        ("DeviceRequests", [{"Count": -1, "Capabilities": [["gpu"]]}], "device requests"),
    ],
)
def test_what_swarm_would_drop_is_refused_with_a_message(key, value, words):
    create = {**CREATE, "host_config": {**HOST_CONFIG, key: value}}
    with pytest.raises(S.SwarmSpecError) as e:
        S.service_create_kwargs(create, name="s", service_labels={})
    assert words in str(e.value) and "Swarm" in str(e.value)
    # empty values are not a request
    S.check_supported({"Privileged": False, "Devices": [], "DeviceRequests": []})


def test_network_volume_options_carry_the_driver():
    opts = S.volume_options({"k": "v"}, "local", {"type": "nfs", "o": "addr=10.0.0.5"})
    assert opts == {
        "Labels": {"k": "v"},
        "DriverConfig": {"Name": "local", "Options": {"type": "nfs", "o": "addr=10.0.0.5"}},
    }
    assert S.volume_options({}, "local") == {"Labels": {}}


def test_node_problems_name_the_node():
    ok = {"ID": "n1", "Description": {"Hostname": "node2"}, "Status": {"State": "ready"}}
    assert S.node_problem({**ok, "Spec": {"Availability": "active"}}) is None
    assert S.node_problem({**ok, "Status": {"State": "down"}}) == "node node2 is down"
    assert S.node_problem({**ok, "Spec": {"Availability": "drain"}}) == "node node2 is drained"
    assert S.node_problem({**ok, "Spec": {"Availability": "pause"}}) == "node node2 is pause"


def test_reading_tasks_and_nodes():
    task = {
        "Status": {
            "State": "running",
            "PortStatus": {"Ports": [{"TargetPort": 8888, "PublishedPort": 30001}]},
        },
        "AssignedGenericResources": [
            {"NamedResourceSpec": {"Kind": "NVIDIA-GPU", "Value": "GPU-fake1"}}
        ],
    }
    assert S.task_state(task) == ("running", "")
    assert S.published_port(task, 8888) == 30001 and S.published_port(task, 9999) is None
    assert S.task_resources(task) == {"NVIDIA-GPU": ["GPU-fake1"]}
    stuck = {
        "Status": {
            "State": "pending",
            "Err": "no suitable node (insufficient resources on 3 nodes)",
        }
    }
    assert "insufficient" in S.pending_reason(stuck)
    assert S.pending_reason({"Status": {"State": "pending", "Err": ""}}) is None
    assert S.node_address({"Status": {"Addr": "10.77.0.12"}}) == "10.77.0.12"
    assert (
        S.node_address(
            {"Status": {"Addr": "0.0.0.0"}, "ManagerStatus": {"Addr": "10.77.0.11:2377"}}
        )
        == "10.77.0.11"
    )
    nodes = [
        {
            "Description": {
                "Hostname": "node2",
                "Resources": {
                    "GenericResources": [
                        {"NamedResourceSpec": {"Kind": "NVIDIA-GPU", "Value": "GPU-fake0"}},
                        {"NamedResourceSpec": {"Kind": "NVIDIA-GPU", "Value": "GPU-fake1"}},
                    ]
                },
            }
        },
        {"Description": {"Hostname": "node3", "Resources": {}}},
    ]
    assert S.gpu_count_of_nodes(nodes, "NVIDIA-GPU") == {"node2": 2}


def test_a_swarm_hub_with_a_privileged_group_does_not_start():
    from traitlets.config import Config

    from jupyterhub_ext.swarm import hubcheck

    c = Config()
    c.JupyterHub.spawner_class = "ext-swarm"
    hubcheck.check_at_hub_start(c)  # the defaults are fine
    c.ExtSwarmSpawner.docker_privileged_group = "docker-privileged"
    c.DockerSpawner.extra_host_config = {"devices": ["/dev/fuse"], "cap_add": ["SYS_ADMIN"]}
    with pytest.raises(S.SwarmSpecError) as e:
        hubcheck.check_at_hub_start(c)
    text = str(e.value)
    assert "docker_privileged_group = 'docker-privileged'" in text
    assert "extra_host_config['devices']" in text and "cap_add" not in text
    # the same config on a single engine is fine
    c.JupyterHub.spawner_class = "ext-docker"
    hubcheck.check_at_hub_start(c)
    assert hubcheck.uses_swarm(Config({"JupyterHub": {"spawner_class": "x.ExtSwarmSpawner"}}))


def test_a_swarm_hub_with_our_own_gpu_allocation_does_not_start():
    from traitlets.config import Config

    from jupyterhub_ext.swarm import hubcheck

    c = Config()
    c.JupyterHub.spawner_class = "ext-swarm"
    # profiles with a number of GPUs are what Swarm reserves: fine
    c.ExtSwarmSpawner.profiles = [{"slug": "cpu"}, {"slug": "two", "gpus": 2}]
    hubcheck.check_at_hub_start(c)
    c.ExtSwarmSpawner.profiles = [{"slug": "cpu"}, {"slug": "every", "gpus": "all"}]
    c.ExtSwarmSpawner.gpu_devices = ["GPU-0", "GPU-1"]
    c.ExtDockerSpawner.gpu_sharing = 2
    c.ExtSwarmSpawner.admission_memory_reserve = "2G"
    with pytest.raises(S.SwarmSpecError) as e:
        hubcheck.check_at_hub_start(c)
    text = str(e.value)
    assert "profile 'every': gpus = \"all\"" in text
    assert "gpu_devices:" in text and "generic resources" in text
    assert "gpu_sharing = 2" in text
    assert "admission_memory_reserve = '2G'" in text
    assert "'cpu'" not in text
    c.JupyterHub.spawner_class = "ext-docker"
    hubcheck.check_at_hub_start(c)


def test_swarm_volume_options_resolve_secrets_and_carry_owner_labels(monkeypatch):
    import asyncio
    from datetime import datetime
    from types import SimpleNamespace

    from jupyterhub_ext.swarm.spawner import ExtSwarmSpawner

    monkeypatch.setenv("JHEXT_TEST_CIFS_PASSWORD", "s3cret")
    user = SimpleNamespace(
        id=7, name="alice", created=datetime(2026, 1, 2, 3, 4, 5), url="/user/alice/"
    )
    sp = ExtSwarmSpawner(
        user=user,
        volume_set={
            "home": {"name": "jh-{username}-home", "mount": "/home/jovyan"},
            "share": {
                "name": "jh-{username}-share",
                "mount": "/home/jovyan/share",
                "driver_opts": {
                    "type": "cifs",
                    "device": "//fs/share",
                    "o": "username=alice,password=${env:JHEXT_TEST_CIFS_PASSWORD}",
                },
            },
        },
    )
    opts = asyncio.run(sp.volume_options())
    assert opts["jh-alice-home"]["Labels"]["jupyterhub-ext.owner-name"] == "alice"
    assert "DriverConfig" not in opts["jh-alice-home"]
    share = opts["jh-alice-share"]["DriverConfig"]
    assert share["Options"]["o"] == "username=alice,password=s3cret"
    # only plain local volumes pin a server to a node
    assert sp.pinned()
    # defaults that differ from ExtDockerSpawner on Swarm
    assert sp.docker_privileged_group == "" and sp.gpu_count == 1 and sp.remove is True


def test_node_job_results_are_reassembled_from_their_parts():
    import base64
    import struct

    from jupyterhub_ext.engine import nodejob

    body = base64.b64encode(b'{"answer": 42}').decode()
    lines = [f"JHEXT-RESULT 200 1 2 {body[8:]}\n", f"noise\nJHEXT-RESULT 200 0 2 {body[:8]}\n"]
    # as service_logs sends them: multiplexed frames, a line cut across two frames
    raw = b"".join(
        struct.pack(">BxxxI", 1, len(p)) + p
        for p in (lines[1][:20].encode(), (lines[1][20:] + lines[0]).encode())
    )
    assert nodejob.parse_result(raw) == (200, b'{"answer": 42}')
    assert nodejob.parse_result(b"JHEXT-RESULT 404 0 1 \n") == (404, b"")
    with pytest.raises(ValueError, match="incomplete"):
        nodejob.parse_result(lines[0].encode())
    with pytest.raises(ValueError, match="no result"):
        nodejob.parse_result(b"Traceback ...\n")
