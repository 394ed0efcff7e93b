"""Unit tests of the DockerSpawner compatibility rules (pure functions, no engine)."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace

import docker
import pytest
from traitlets.config import Config

from jupyterhub_ext.engine import dockerpool
from jupyterhub_ext.hubconfig import check_docker_spawner_options
from jupyterhub_ext.spawner import DEFAULT_VOLUME_SET, ExtDockerSpawner, compat, readiness
from jupyterhub_ext.spawner import hostnet as netutil
from jupyterhub_ext.storage.volumes import VolumeSetError, parse_volume_set

DOCS_VOLUMES = {"jupyterhub-user-{username}": "/home/jovyan/work"}


# -- extra_create_kwargs: merged as DockerSpawner merges it -------------------


def test_create_kwargs_lists_replace_dicts_merge():
    ours = {
        "command": ["jupyterhub-singleuser"],
        "labels": {"jupyterhub-ext.owner-name": "alice"},
        "environment": {"JUPYTERHUB_API_TOKEN": "t"},
    }
    extra = {
        "command": ["tini", "--", "jupyterhub-singleuser", "--debug"],
        "labels": {"team": "x"},
        "environment": {"EXTRA": "1"},
        "host_config": {"ShmSize": 268435456},
    }
    merged = compat.deep_merge(ours, extra)
    assert merged["command"] == ["tini", "--", "jupyterhub-singleuser", "--debug"]
    assert merged["labels"] == {"jupyterhub-ext.owner-name": "alice", "team": "x"}
    assert merged["environment"] == {"JUPYTERHUB_API_TOKEN": "t", "EXTRA": "1"}
    assert merged["host_config"] == {"ShmSize": 268435456}
    # the admin's config objects are not changed by a spawn
    merged["host_config"]["ShmSize"] = 1
    merged["labels"]["more"] = "y"
    assert extra["host_config"] == {"ShmSize": 268435456} and "more" not in extra["labels"]


# -- tls_config: one client per engine and TLS settings -------------------------


def test_env_tls_config_objects_compare_by_value(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    a = dockerpool.client(base_url="tcp://127.0.0.1:2", tls=docker.tls.TLSConfig(ca_cert=str(ca)))
    b = dockerpool.client(base_url="tcp://127.0.0.1:2", tls=docker.tls.TLSConfig(ca_cert=str(ca)))
    assert a is b


def test_client_is_built_without_a_network_call_and_refuses_to_negotiate_on_the_loop():
    c = dockerpool.client(base_url="tcp://127.0.0.1:3", connect_timeout=0.5)
    assert not c.negotiated  # version="auto" would have tried 127.0.0.1:3 already

    async def on_loop():
        return c.api_version

    with pytest.raises(RuntimeError, match="event loop"):
        asyncio.run(on_loop())

    async def in_pool():
        await dockerpool.ready(c)

    with pytest.raises(dockerpool.DockerUnavailable, match="did not tell its API version"):
        asyncio.run(in_pool())


# -- volumes: the default set steps aside, an explicit one is refused ---------------


def test_default_home_steps_aside_for_docker_spawner_docs_volumes():
    specs = parse_volume_set(DEFAULT_VOLUME_SET)
    theirs = compat.config_mounts(DOCS_VOLUMES, {}, [])
    found = compat.conflicts(specs, {}, theirs)
    assert [c.why for c in found] == ["same volume"]
    assert compat.stepping_aside(found) == {"home"}
    # at /home/jovyan: Docker would refuse a duplicate mount point
    at_home = compat.config_mounts({"x-{username}": "/home/jovyan"}, {}, [])
    found = compat.conflicts(specs, {}, at_home)
    assert [c.why for c in found] == ["same mount point"]
    # a parent directory: the default steps aside, an explicit set may live with it
    found = compat.conflicts(specs, {}, compat.config_mounts({}, {}, [{"target": "/home"}]))
    assert [c.why for c in found] == ["covers"] and not compat.blocking(found)
    # another volume inside home: both mount, nothing steps aside
    other = compat.config_mounts({"data-{username}": "/home/jovyan/work"}, {}, [])
    assert compat.conflicts(specs, {}, other) == []


def test_setup_refuses_explicit_volume_set_colliding_with_volumes_and_shows_the_change():
    c = Config()
    c.ExtDockerSpawner.volume_set = {"home": {"name": "lab-{username}", "mount": "/home/jovyan"}}
    c.DockerSpawner.volumes = {"jupyterhub-user-{username}": {"bind": "/home/jovyan", "mode": "rw"}}
    with pytest.raises(VolumeSetError) as err:
        check_docker_spawner_options(c)
    msg = str(err.value)
    assert "duplicate mount point" in msg
    assert "c.ExtDockerSpawner.volume_set = {'home': {'name': 'jupyterhub-user-{username}'" in msg


def test_setup_accepts_the_docs_config_with_the_default_set(caplog):
    c = Config()
    c.DockerSpawner.volumes = DOCS_VOLUMES
    with caplog.at_level(logging.WARNING, logger="jupyterhub_ext"):
        check_docker_spawner_options(c)
    assert "default volume_set gives way" in caplog.text


def test_setup_says_port_and_host_ip_are_unused_on_the_host_network(caplog):
    c = Config()
    c.DockerSpawner.network_name = "host"
    c.DockerSpawner.port = 8888
    c.Spawner.host_ip = "0.0.0.0"
    with caplog.at_level(logging.WARNING, logger="jupyterhub_ext"):
        check_docker_spawner_options(c)
    assert "c.DockerSpawner.port is not used with network_name = 'host'" in caplog.text
    assert "c.Spawner.host_ip is not used" in caplog.text


# -- messages and bookkeeping -----------------------------------------------------


def test_deprecated_alias_message_names_the_section_the_admin_wrote(caplog):
    log = logging.getLogger("test-compat")
    cfg = Config()
    cfg.DockerSpawner.container_image = "example/old:1"
    with caplog.at_level(logging.WARNING, logger="test-compat"):
        sp = ExtDockerSpawner(config=cfg, log=log, user=SimpleNamespace(name="alice"))
    assert sp.image == "example/old:1"
    assert "c.DockerSpawner.container_image is deprecated" in caplog.text
    assert "use c.DockerSpawner.image" in caplog.text
    assert "ExtDockerSpawner.container_image" not in caplog.text


def test_host_network_reused_container_port_is_swapped_not_leaked():
    sp = ExtDockerSpawner(network_name="host")
    sp.port = netutil.reserve_port()
    reused = netutil.reserve_port()
    netutil.release_port(reused)  # a port the old container holds, not in our table

    async def inspect(method, *args, **kwargs):
        assert method == "inspect_container"
        return {"Config": {"Env": [f"JUPYTERHUB_SERVICE_URL=http://127.0.0.1:{reused}/user/x/"]}}

    reserved = sp.port
    sp.docker = inspect  # the engine's answer for a container made with another port
    assert asyncio.run(sp.get_ip_and_port()) == ("127.0.0.1", reused)
    assert reserved not in netutil.reserved()  # the start's reservation is given back
    assert reused in netutil.reserved()  # and the port in use is held until stop
    netutil.release_port(reused)


def test_readiness_budget_leaves_the_rest_to_the_hubs_wait():
    sp = ExtDockerSpawner(start_timeout=5, http_timeout=60)
    import time

    budget = sp.readiness_budget(time.monotonic() + 5)
    assert 3.5 < budget <= 4.0  # a margin before start_timeout
    assert ExtDockerSpawner(start_timeout=300, http_timeout=30).readiness_budget(
        time.monotonic() + 300
    ) == pytest.approx(30, abs=0.1)

    async def alive():
        return None

    async def slow():
        # nothing listens here: the server never answers, the container "runs"
        return await readiness.wait_until_up(
            "http://127.0.0.1:9/api", interval=0.05, still_running=alive, budget=0.5
        )

    t0 = time.monotonic()
    assert asyncio.run(slow()) is None
    assert time.monotonic() - t0 < 2


def test_spawn_time_volume_check_steps_aside_or_refuses():
    """Settings that reach a spawner without setup(c) seeing them (group_overrides)."""
    from jupyterhub_ext.spawner import SpawnRefused

    alice = SimpleNamespace(name="alice")
    docs = ExtDockerSpawner(user=alice, volumes=DOCS_VOLUMES)
    assert docs.volume_specs == []  # the default home gives way to the docs' volume
    docs.check_volume_conflicts()  # and the start goes ahead
    inside = ExtDockerSpawner(user=alice, volumes={"data-{username}": "/home/jovyan/work"})
    assert [s.key for s in inside.volume_specs] == ["home"]

    explicit = ExtDockerSpawner(
        user=alice,
        volume_set={"home": {"name": "lab-{username}", "mount": "/home/jovyan"}},
        volumes={"jupyterhub-user-{username}": "/home/jovyan"},
    )
    with pytest.raises(SpawnRefused) as err:
        explicit.check_volume_conflicts()
    assert err.value.status_code == 409
    assert "c.ExtDockerSpawner.volume_set = {'home': {'name': 'jupyterhub-user-alice'" in str(
        err.value.jupyterhub_message
    )
