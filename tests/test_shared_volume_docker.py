"""A local shared volume people can write to, against a real engine, hub and servers.

Docker makes a fresh named volume ``root:root 755`` when its mount path is not
in the image; the spawner sets the image user's owner and group, mode 2775,
with a helper container right after creating it.
"""

from __future__ import annotations

import docker
import pytest

from hubctl import run_in

pytestmark = pytest.mark.docker


def test_group_shared_volume_is_writable_by_members_and_not_mounted_for_others(
    make_hub, run_prefix, docker_client
):
    import secrets

    prefix = f"{run_prefix}-{secrets.token_hex(2)}"
    team = f"{prefix}-team"
    home = {"name": f"{prefix}-{{username}}-home", "mount": "/home/jovyan"}
    # the entry gives no more than name, mount and scope
    config = f"""
c.ExtDockerSpawner.volume_set = {{"home": {home!r}}}
c.Spawner.group_overrides = {{
    "01-team": {{
        "groups": ["team"],
        "spawner_override": {{
            "volume_set": {{
                "home": {home!r},
                "team": {{"name": {team!r}, "mount": "/srv/team", "scope": "shared"}},
            }}
        }},
    }}
}}
"""
    hub = make_hub(config, prefix=prefix)
    for name in ("alice", "bob", "carol"):
        hub.create_user(name)
    hub.api("POST", "/groups/team").raise_for_status()
    hub.api("POST", "/groups/team/users", json={"users": ["alice", "bob"]}).raise_for_status()

    hub.spawn("alice")
    ca = hub.container("alice")
    code, out = run_in(ca, "id -u; stat -c '%u:%g %a' /srv/team")
    assert code == 0, out
    uid, perms = out.split("\n", 1)
    assert uid.strip() == "1000"  # the server runs as the image's user, not root
    assert perms.strip() == "1000:100 2775"
    assert run_in(ca, "echo from-alice > /srv/team/alice.txt") == (0, "")

    hub.spawn("bob")
    cb = hub.container("bob")
    code, out = run_in(cb, "cat /srv/team/alice.txt && echo from-bob > /srv/team/bob.txt")
    assert (code, out.strip()) == (0, "from-alice")
    code, out = run_in(ca, "cat /srv/team/bob.txt; stat -c '%g' /srv/team/bob.txt")
    assert (code, out.split()) == (0, ["from-bob", "100"])  # setgid: files keep the group
    # a member may also make directories the others can write into (group-writable)
    assert run_in(cb, "mkdir /srv/team/shared-dir && touch /srv/team/shared-dir/x")[0] == 0

    # outside the group: the volume is not in carol's set, nothing is mounted
    hub.spawn("carol")
    cc = hub.container("carol")
    cc.reload()
    assert team not in {m.get("Name") for m in cc.attrs["Mounts"]}
    code, out = run_in(cc, "ls /srv/team")
    assert code != 0 and "No such file" in out

    # set once, at creation, by a helper that is gone again
    log = hub.log_text()
    assert log.count(f"Set volume {team} (team) to owner 1000, group 100, mode 0o2775") == 1
    helpers = docker_client.containers.list(
        all=True, filters={"label": "jupyterhub-ext.volume-permissions"}
    )
    assert [h for h in helpers if h.labels.get("jupyterhub-ext.volume-permissions") == team] == []
    assert docker_client.volumes.get(team).attrs["Labels"]["jupyterhub-ext.scope"] == "shared"


def test_without_our_helper_docker_gives_root_755(docker_client, lab_image, run_prefix):
    """The problem the helper fixes, checked on this engine (so the test above can fail)."""
    name = f"{run_prefix}-plain-{__import__('secrets').token_hex(2)}"
    docker_client.volumes.create(name)
    try:
        out = docker_client.containers.run(
            lab_image,
            ["sh", "-c", "stat -c '%u:%g %a' /srv/team; touch /srv/team/x"],
            entrypoint=[],
            user="1000",
            volumes={name: {"bind": "/srv/team", "mode": "rw"}},
            network_mode="none",
            remove=True,
            stderr=True,
        )
        raise AssertionError(f"a uid-1000 write to a fresh volume worked: {out!r}")
    except docker.errors.ContainerError as e:
        assert b"Permission denied" in e.stderr
    finally:
        docker_client.volumes.get(name).remove(force=True)
