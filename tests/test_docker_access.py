"""Docker access by hub group, against the real engine and a real hub.

The hub's engine socket (/run/jupyterhub-ext-docker/docker.sock) is the
"host's Docker socket" the docker-sock group gets.
"""

from __future__ import annotations

import re

import pytest

from hubctl import run_in

pytestmark = pytest.mark.docker

ENGINE_SOCK = "/run/jupyterhub-ext-docker/docker.sock"
CAP_SYS_ADMIN = 1 << 21

PING = r"""python3 - <<'EOF'
import socket
s = socket.socket(socket.AF_UNIX)
s.connect("/var/run/docker.sock")
s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
data = b""
while chunk := s.recv(4096):
    data += chunk
print(data.decode().split("\r\n\r\n", 1)[1])
EOF"""


def caps(container, field: str, user: str | None = None) -> int:
    code, out = run_in(container, f"grep ^{field}: /proc/self/status", user=user)
    assert code == 0, out
    return int(out.split()[1], 16)


def set_membership(hub, group: str, user: str, member: bool) -> None:
    r = hub.api("POST" if member else "DELETE", f"/groups/{group}/users", json={"users": [user]})
    assert r.status_code == 200, r.text


def restart(hub, name: str):
    hub.stop_server(name)
    hub.spawn(name)
    c = hub.container(name)
    c.reload()
    return c


def assert_socket_access(c) -> None:
    binds = c.attrs["HostConfig"]["Binds"] or []
    assert f"{ENGINE_SOCK}:/var/run/docker.sock:rw" in binds
    env = dict(e.split("=", 1) for e in c.attrs["Config"]["Env"])
    assert env["DOCKER_HOST"] == "unix:///var/run/docker.sock"
    # the lab's own (non-root) user talks to the engine
    code, out = run_in(c, PING)
    assert (code, out.strip()) == (0, "OK"), out
    code, out = run_in(c, "curl -s --unix-socket /var/run/docker.sock http://docker/_ping")
    assert (code, out) == (0, "OK")


def assert_no_socket_access(c) -> None:
    binds = c.attrs["HostConfig"]["Binds"] or []
    assert not any("docker.sock" in b for b in binds), binds
    assert not any("docker.sock" in (m.get("Source") or "") for m in c.attrs["Mounts"])
    assert "DOCKER_HOST" not in {e.split("=", 1)[0] for e in c.attrs["Config"]["Env"]}
    code, _ = run_in(c, "test -e /var/run/docker.sock")
    assert code == 1


def assert_privileged(c) -> None:
    assert c.attrs["HostConfig"]["Privileged"] is True
    # root in the container has every capability of the bounding set, incl. SYS_ADMIN
    root_eff = caps(c, "CapEff", user="root")
    assert root_eff & CAP_SYS_ADMIN
    assert root_eff == caps(c, "CapBnd", user="root")
    assert caps(c, "CapBnd") & CAP_SYS_ADMIN


def assert_not_privileged(c) -> None:
    assert c.attrs["HostConfig"]["Privileged"] is False
    assert not caps(c, "CapEff", user="root") & CAP_SYS_ADMIN
    assert not caps(c, "CapBnd") & CAP_SYS_ADMIN


def test_docker_sock_and_privileged_groups_follow_membership(make_hub):
    hub = make_hub(
        f"""
c.ExtDockerSpawner.docker_sock_host_path = "{ENGINE_SOCK}"
# an admin maps form fields onto traits; grants stay out of users' reach anyway
c.Spawner.apply_user_options = {{
    "sock_group": "docker_sock_group",
    "host": "extra_host_config",
}}
"""
    )
    groups = {g["name"] for g in hub.api("GET", "/groups").json()}
    assert {"docker-sock", "docker-privileged"} <= groups  # exist right after hub start

    hub.create_user("alice")
    set_membership(hub, "docker-sock", "alice", True)
    set_membership(hub, "docker-privileged", "alice", True)
    hub.spawn("alice")
    hub.spawn("bob")
    alice, bob = hub.container("alice"), hub.container("bob")
    alice.reload()
    bob.reload()

    assert_socket_access(alice)
    assert_privileged(alice)
    assert_no_socket_access(bob)
    assert_not_privileged(bob)

    # one decision line per spawn, naming the groups that granted what
    lines = [
        ln for ln in hub.log_text().splitlines() if 'action="spawn-grants" target="alice"' in ln
    ]
    assert len(lines) == 1, lines
    assert "docker-sock via group 'docker-sock'" in lines[0]
    assert "privileged via group 'docker-privileged'" in lines[0]
    assert 'groups=["docker-privileged", "docker-sock"]' in lines[0]

    # nothing bob sends grants anything, even through fields the admin mapped
    hub.api("POST", "/groups/staff", json={}).raise_for_status()
    set_membership(hub, "staff", "bob", True)
    hub.stop_server("bob")
    for options, what in (
        ({"sock_group": "staff"}, "docker_sock_group"),
        ({"host": {"privileged": True}}, "privileged"),
        ({"host": {"binds": [f"{ENGINE_SOCK}:/var/run/docker.sock"]}}, "docker socket"),
    ):
        r = hub.api("POST", "/users/bob/server", json=options)
        assert r.status_code == 403, (options, r.status_code, r.text)
        assert f"may not set {what}" in r.json()["message"]
        assert hub.container("bob") is None

    # adding bob to both groups and restarting applies it ...
    set_membership(hub, "docker-sock", "bob", True)
    set_membership(hub, "docker-privileged", "bob", True)
    hub.spawn("bob")
    bob = hub.container("bob")
    bob.reload()
    assert_socket_access(bob)
    assert_privileged(bob)

    # ... removing him and restarting takes it away
    set_membership(hub, "docker-sock", "bob", False)
    set_membership(hub, "docker-privileged", "bob", False)
    bob = restart(hub, "bob")
    assert_no_socket_access(bob)
    assert_not_privileged(bob)


ADMIN_CONFIG = """
c.ExtDockerSpawner.docker_sock_host_path = "{sock}"
c.DockerSpawner.volumes = {{"{p}-admin-{{username}}": "/srv/admin-volume"}}
c.DockerSpawner.mounts = [
    {{"type": "volume", "source": "{p}-admin-mount", "target": "/srv/admin-mount"}},
]

def extra_host_config(spawner):
    return {{
        "binds": {{"{p}-callable-{{username}}": {{"bind": "/srv/callable", "mode": "rw"}}}},
        "group_add": ["4242"],
    }}

c.DockerSpawner.extra_host_config = extra_host_config
c.Spawner.group_overrides = {{
    "01-staff": {{
        "groups": ["staff"],
        "spawner_override": {{
            "environment": {{"STAFF": "yes"}},
            "volumes": {{"{p}-staff-{{username}}": "/srv/staff"}},
        }},
    }},
}}
"""


def test_grants_compose_with_admin_config_and_deleted_groups_come_back(make_hub):
    hub = make_hub(start=False)
    hub.config_file.write_text(
        hub.config_file.read_text().replace("jupyterhub_ext.setup(c)", "")
        + ADMIN_CONFIG.format(p=hub.prefix, sock=ENGINE_SOCK)
        + "\njupyterhub_ext.setup(c)\n"
    )
    hub.start()
    hub.create_user("carol")
    hub.api("POST", "/groups/staff", json={}).raise_for_status()
    set_membership(hub, "staff", "carol", True)
    set_membership(hub, "docker-sock", "carol", True)

    # an admin deletes a built-in group; the next spawn re-creates it (empty)
    assert hub.api("DELETE", "/groups/docker-privileged").status_code == 204
    assert hub.api("GET", "/groups/docker-privileged").status_code == 404

    hub.spawn("carol")
    r = hub.api("GET", "/groups/docker-privileged")
    assert r.status_code == 200 and r.json()["users"] == []
    assert "Re-created missing group(s) docker-privileged" in hub.log_text()

    c = hub.container("carol")
    c.reload()
    hc = c.attrs["HostConfig"]
    p = hub.prefix
    # nothing the admin configured was dropped by our socket bind, and vice versa
    assert set(hc["Binds"]) >= {
        f"{ENGINE_SOCK}:/var/run/docker.sock:rw",
        f"{p}-admin-carol:/srv/admin-volume:rw",
        f"{p}-staff-carol:/srv/staff:rw",
        f"{p}-callable-carol:/srv/callable:rw",
    }, hc["Binds"]
    mounted = {m["Destination"]: m.get("Name") for m in c.attrs["Mounts"]}
    assert mounted["/home/jovyan"] == f"{p}-carol-home"  # the volume set
    assert mounted["/srv/admin-mount"] == f"{p}-admin-mount"
    gid = re.search(r"socket_gid=(\d+)", hub.log_text()).group(1)
    assert set(hc["GroupAdd"]) == {gid, "4242"}
    env = dict(e.split("=", 1) for e in c.attrs["Config"]["Env"])
    assert env["STAFF"] == "yes" and env["DOCKER_HOST"] == "unix:///var/run/docker.sock"
    assert_socket_access(c)


def test_kept_containers_are_recreated_when_grants_change(make_hub):
    """remove = False reuses a stopped container; not one created with other grants."""
    hub = make_hub(
        f"""
c.DockerSpawner.remove = False
c.ExtDockerSpawner.docker_sock_host_path = "{ENGINE_SOCK}"
"""
    )
    hub.create_user("dave")
    set_membership(hub, "docker-privileged", "dave", True)
    first = restart_kept(hub, "dave", first=True)
    assert_privileged(first)
    assert first.labels["jupyterhub-ext.grants"] == "privileged"

    # same grants: DockerSpawner's reuse is untouched
    again = restart_kept(hub, "dave")
    assert again.id == first.id

    # left the group: the privileged container is not started again
    set_membership(hub, "docker-privileged", "dave", False)
    after = restart_kept(hub, "dave")
    assert after.id != first.id
    assert_not_privileged(after)
    assert after.labels["jupyterhub-ext.grants"] == "none"
    assert "created with grants privileged, now none" in hub.log_text()


def restart_kept(hub, name: str, first: bool = False):
    if not first:
        hub.stop_server(name)
        kept = hub.container(name)
        assert kept is not None and kept.status == "exited"
    hub.spawn(name)
    c = hub.container(name)
    c.reload()
    return c
