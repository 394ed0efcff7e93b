"""Group grants: decisions, host-config fragments, groups in a JupyterHub database, setup(c)."""

from __future__ import annotations

import os

import pytest
from jupyterhub import orm
from traitlets.config import Config

from jupyterhub_ext.hubconfig import check_gpu_config, configure_groups
from jupyterhub_ext.spawner import grants
from jupyterhub_ext.spawner import hostconfig as objects


def test_decide_access_by_group_only():
    d = grants.decide_access(
        {"docker-sock", "staff"}, sock_group="docker-sock", privileged_group="docker-privileged"
    )
    assert (d.docker_sock, d.privileged) == ("docker-sock", None)
    d = grants.decide_access(
        {"docker-privileged"}, sock_group="docker-sock", privileged_group="docker-privileged"
    )
    assert (d.docker_sock, d.privileged) == (None, "docker-privileged")
    # an empty group name switches the grant off, even for a group named ""
    d = grants.decide_access({""}, sock_group="", privileged_group="")
    assert (d.docker_sock, d.privileged) == (None, None)
    assert "docker-sock no, privileged no" == d.summary()


def test_access_fragments_and_environment():
    both = grants.AccessDecision(docker_sock="docker-sock", privileged="docker-privileged")
    frag = grants.access_host_config(
        both, sock_host_path="/run/d.sock", sock_container_path="/var/run/docker.sock", sock_gid=998
    )
    assert frag == {
        "binds": ["/run/d.sock:/var/run/docker.sock:rw"],
        "group_add": ["998"],
        "privileged": True,
    }
    none = grants.AccessDecision()
    assert (
        grants.access_host_config(
            none, sock_host_path="/x", sock_container_path="/y", sock_gid=None
        )
        == {}
    )
    assert grants.access_environment(both, sock_container_path="/d/s.sock") == {
        "DOCKER_HOST": "unix:///d/s.sock"
    }
    assert grants.access_environment(none, sock_container_path="/d/s.sock") == {}


def test_fragments_merge_with_admin_binds_and_device_requests():
    """Our socket bind and the admin's binds / device requests all survive the merge."""
    ours = grants.access_host_config(
        grants.AccessDecision(docker_sock="g"),
        sock_host_path="/run/d.sock",
        sock_container_path="/var/run/docker.sock",
        sock_gid=5,
    )
    admin = {
        "binds": objects.normalize_binds({"/data": {"bind": "/data", "mode": "ro"}}),
        "group_add": ["100"],
        "device_requests": [{"Driver": "cdi", "DeviceIDs": ["x.com/fpga=0"]}],
    }
    gpu_frag = {"device_requests": [{"Driver": "", "Count": -1, "Capabilities": [["gpu"]]}]}
    merged = objects.merge_fragments({"binds": ["vol:/home:rw"]}, gpu_frag, ours, admin)
    assert merged["binds"] == [
        "vol:/home:rw",
        "/run/d.sock:/var/run/docker.sock:rw",
        "/data:/data:ro",
    ]
    assert merged["group_add"] == ["5", "100"]
    assert [r["Driver"] for r in merged["device_requests"]] == ["", "cdi"]


def test_socket_gid(tmp_path):
    sock = tmp_path / "docker.sock"
    sock.write_text("")
    assert grants.socket_gid(str(sock), "auto") == os.stat(sock).st_gid
    assert grants.socket_gid(str(tmp_path / "missing.sock"), "auto") is None
    assert grants.socket_gid(str(sock), 4242) == 4242
    assert grants.socket_gid(str(sock), "4242") == 4242
    assert grants.socket_gid(str(sock), None) is None


def test_escalations_in_user_settable_config():
    sock = "/var/run/docker.sock"
    assert grants.escalations({"privileged": True}, sock) == ["privileged"]
    assert grants.escalations({"binds": ["/var/run/docker.sock:/s:rw"]}, sock) == ["docker socket"]
    assert grants.escalations({"binds": {"/run/other/docker.sock": {"bind": "/s"}}}, sock) == [
        "docker socket"
    ]
    assert grants.escalations({"mounts": [{"source": sock, "target": "/s"}]}, sock) == [
        "docker socket"
    ]
    assert grants.escalations({"binds": ["/data:/data"], "mem_limit": "1g"}, sock) == []
    assert grants.volume_escalations({sock: "/var/run/docker.sock"}, sock) == ["docker socket"]
    assert grants.volume_escalations({"home-{username}": "/home/jovyan"}, sock) == []


@pytest.fixture
def db(tmp_path):
    session = orm.new_session_factory(f"sqlite:///{tmp_path}/jupyterhub.sqlite")()
    yield session
    session.close()


def test_groups_are_created_and_membership_read_from_the_database(db):
    alice = orm.User(name="alice")
    db.add(alice)
    db.commit()
    assert grants.ensure_groups(db, ["docker-sock", "docker-privileged", "", "docker-sock"]) == [
        "docker-sock",
        "docker-privileged",
    ]
    assert grants.ensure_groups(db, ["docker-sock", "docker-privileged"]) == []
    assert grants.user_group_names(db, alice.id) == set()

    # another session (another process, the REST API) changes membership
    other = orm.Session(bind=db.get_bind())
    group = other.query(orm.Group).filter_by(name="docker-sock").one()
    group.users.append(other.query(orm.User).filter_by(name="alice").one())
    other.commit()
    assert grants.user_group_names(db, alice.id) == {"docker-sock"}

    # an admin deletes the group: it comes back, empty
    other.delete(other.query(orm.Group).filter_by(name="docker-sock").one())
    other.commit()
    assert grants.user_group_names(db, alice.id) == set()
    assert grants.ensure_groups(db, ["docker-sock", "docker-privileged"]) == ["docker-sock"]
    assert orm.Group.find(db, "docker-sock").users == []
    other.close()


def test_setup_loads_builtin_groups_without_touching_admin_groups():
    c = Config()
    c.ExtDockerSpawner.gpu_groups = ["gpu-users"]
    c.JupyterHub.load_groups = {"docker-sock": {"users": ["root-ish"]}, "teachers": {}}
    configure_groups(c)
    assert c.JupyterHub.load_groups == {
        "docker-sock": {"users": ["root-ish"]},
        "teachers": {},
        "docker-privileged": {},
        "gpu-users": {},
    }

    c = Config()
    c.DockerSpawner.docker_sock_group = "builders"
    c.ExtDockerSpawner.docker_privileged_group = ""
    configure_groups(c)
    assert c.JupyterHub.load_groups == {"builders": {}}

    # JupyterHub refuses load_groups when the authenticator manages groups
    c = Config()
    c.Authenticator.manage_groups = True
    configure_groups(c)
    assert "load_groups" not in c.JupyterHub


def test_setup_refuses_bad_gpu_config():
    from jupyterhub_ext.gpu import GpuConfigError

    for bad in ({"gpu_mode": "sometimes"}, {"gpu_count": 0}, {"gpu_capabilities": ["fast"]}):
        c = Config()
        for k, v in bad.items():
            setattr(c.ExtDockerSpawner, k, v)
        with pytest.raises(GpuConfigError):
            check_gpu_config(c)
    c = Config()
    c.ExtDockerSpawner.gpu_mode = "on"
    c.ExtDockerSpawner.gpu_count = 2
    check_gpu_config(c)
