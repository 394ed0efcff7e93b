"""Shared and archive storage against a real engine, real hubs and real servers.

- a read-only union archive of two host directories (overlay volume);
- shared volumes with driver options, secrets taken from env / file;
- secrets masked when Docker repeats them in a mount error;
- per-user volumes removed on user / named-server deletion (opt-in).
"""

from __future__ import annotations

import secrets
import time

import docker
import pytest

from hubctl import HubError, run_in

pytestmark = pytest.mark.docker


def volume_set(entries: dict) -> str:
    return f"c.ExtDockerSpawner.volume_set = {entries!r}\n"


def mounts(container) -> dict[str, dict]:
    container.reload()
    return {m["Destination"]: m for m in container.attrs["Mounts"]}


def volume_names(client: docker.DockerClient, prefix: str) -> set[str]:
    return {v.name for v in client.volumes.list() if v.name.startswith(prefix)}


# -- union archive ------------------------------------------------------------------


def test_union_archive_higher_priority_copy_wins_and_is_read_only(
    make_hub, run_prefix, tmp_path, docker_client
):
    new, old = tmp_path / "archive-new", tmp_path / "archive-old"
    for d in (new / "osiris-rex", old / "osiris-rex"):
        d.mkdir(parents=True)
    # the same dataset in both, superseded in the high-priority directory
    (new / "osiris-rex" / "calibration.csv").write_text("version 2 (new)\n")
    (old / "osiris-rex" / "calibration.csv").write_text("version 1 (superseded)\n")
    (new / "osiris-rex" / "only-in-new.txt").write_text("N\n")
    (old / "osiris-rex" / "only-in-old.txt").write_text("O\n")
    (old / "pds3.txt").write_text("pds3\n")

    prefix = f"{run_prefix}-{secrets.token_hex(2)}"
    hub = make_hub(
        volume_set(
            {
                "home": {"name": f"{prefix}-{{username}}-home", "mount": "/home/jovyan"},
                "archive": {
                    "name": f"{prefix}-archive",
                    "mount": "/srv/archive",
                    "union": [str(new), str(old)],
                    "description": "PDS archive (read-only)",
                },
            }
        ),
        prefix=prefix,
    )
    hub.spawn("ada")
    c = hub.container("ada")

    code, out = run_in(c, "cat /srv/archive/osiris-rex/calibration.csv")
    assert (code, out.strip()) == (0, "version 2 (new)")
    code, out = run_in(c, "cd /srv/archive && ls osiris-rex && cat pds3.txt")
    assert code == 0, out
    assert out.split() == ["calibration.csv", "only-in-new.txt", "only-in-old.txt", "pds3"]

    # read-only for the user and even for root inside the container
    for user in ("jovyan", "root"):
        code, out = run_in(c, "echo x > /srv/archive/new-file.txt", user=user)
        assert code != 0 and "Read-only file system" in out, (user, out)
        code, out = run_in(c, "rm /srv/archive/osiris-rex/only-in-old.txt", user=user)
        assert code != 0 and "Read-only file system" in out, (user, out)
        code, out = run_in(c, "echo x >> /srv/archive/osiris-rex/calibration.csv", user=user)
        assert code != 0 and "Read-only file system" in out, (user, out)
    assert (old / "osiris-rex" / "only-in-old.txt").exists()
    assert (old / "osiris-rex" / "calibration.csv").read_text() == "version 1 (superseded)\n"
    assert sorted(p.name for p in new.iterdir()) == ["osiris-rex"]

    # another user sees the same tree, from the same volume
    hub.spawn("grace")
    cg = hub.container("grace")
    code, out = run_in(cg, "cat /srv/archive/osiris-rex/calibration.csv /srv/archive/pds3.txt")
    assert (code, out.split()) == (0, ["version", "2", "(new)", "pds3"])
    assert mounts(cg)["/srv/archive"]["Name"] == mounts(c)["/srv/archive"]["Name"]

    m = mounts(c)["/srv/archive"]
    assert m["Type"] == "volume" and m["RW"] is False
    assert m["Name"].startswith(f"{prefix}-archive-")
    vol = docker_client.volumes.get(m["Name"])
    assert vol.attrs["Options"]["type"] == "overlay"
    assert vol.attrs["Options"]["o"] == f"lowerdir={new}:{old}"
    labels = vol.attrs["Labels"]
    assert labels["jupyterhub-ext.scope"] == "archive"
    assert "jupyterhub-ext.owner-id" not in labels  # nobody's: never removed with a user


def test_missing_union_directory_stops_the_hub_at_start(make_hub, tmp_path):
    present = tmp_path / "present"
    present.mkdir()
    missing = tmp_path / "not-mounted"
    hub = make_hub(
        volume_set(
            {
                "home": {"name": "x-{username}", "mount": "/home/jovyan"},
                "archive": {"mount": "/srv/archive", "union": [str(present), str(missing)]},
            }
        ),
        start=False,
    )
    with pytest.raises(HubError) as err:
        hub.start(timeout=30)
    msg = str(err.value)
    assert "volume_set['archive']" in msg
    assert f"union directory '{missing}' not found on this host" in msg


# -- shared volumes with driver options -------------------------------------------


def test_shared_volumes_with_driver_options_across_users(
    make_hub, run_prefix, tmp_path, docker_client, monkeypatch
):
    token = secrets.token_hex(8)
    team_dir = tmp_path / f"team-{token}"
    team_dir.mkdir()
    team_dir.chmod(0o777)  # jovyan (uid 1000) writes here
    ref_dir = tmp_path / f"reference-{token}"
    ref_dir.mkdir()
    (ref_dir / "readme.txt").write_text("reference data\n")
    # The device paths stand in for secrets: they reach the hub only through
    # the environment and a file, and must appear in no log line.
    monkeypatch.setenv("JHEXT_TEST_TEAM_DEVICE", str(team_dir))
    device_file = tmp_path / "reference-device"
    device_file.write_text(f"{ref_dir}\n")

    prefix = f"{run_prefix}-{secrets.token_hex(2)}"
    # made earlier with other options: Docker keeps them, the admin is told
    docker_client.volumes.create(f"{prefix}-legacy", driver="local")
    hub = make_hub(
        volume_set(
            {
                "home": {"name": f"{prefix}-{{username}}-home", "mount": "/home/jovyan"},
                "legacy": {
                    "name": f"{prefix}-legacy",
                    "mount": "/srv/legacy",
                    "scope": "shared",
                    "driver_opts": {
                        "type": "none",
                        "o": "bind",
                        "device": "${env:JHEXT_TEST_TEAM_DEVICE}",
                    },
                },
                "team": {
                    "name": f"{prefix}-team",
                    "mount": "/srv/team",
                    "scope": "shared",
                    "description": "Team share (read-write)",
                    "driver_opts": {
                        "type": "none",
                        "o": "bind",
                        "device": "${env:JHEXT_TEST_TEAM_DEVICE}",
                    },
                },
                "reference": {
                    "name": f"{prefix}-reference",
                    "mount": "/srv/reference",
                    "scope": "shared",
                    "read_only": True,
                    "driver_opts": {
                        "type": "none",
                        "o": "bind",
                        "device": f"${{file:{device_file}}}",
                    },
                },
            }
        ),
        prefix=prefix,
    )
    hub.spawn("alice")
    hub.spawn("bob")
    ca, cb = hub.container("alice"), hub.container("bob")

    # read-write share: each user's write is visible to the other
    assert run_in(ca, "echo hello-from-alice > /srv/team/from-alice.txt") == (0, "")
    code, out = run_in(cb, "cat /srv/team/from-alice.txt")
    assert (code, out.strip()) == (0, "hello-from-alice")
    assert run_in(cb, "echo hello-from-bob > /srv/team/from-bob.txt") == (0, "")
    code, out = run_in(ca, "cat /srv/team/from-bob.txt")
    assert (code, out.strip()) == (0, "hello-from-bob")
    # ... and it is the host directory named by the secret option
    assert (team_dir / "from-alice.txt").read_text() == "hello-from-alice\n"

    # read-only share: readable, writes refused (root included)
    for c in (ca, cb):
        code, out = run_in(c, "cat /srv/reference/readme.txt")
        assert (code, out.strip()) == (0, "reference data")
        for user in ("jovyan", "root"):
            code, out = run_in(c, "echo x > /srv/reference/new.txt", user=user)
            assert code != 0 and "Read-only file system" in out
    assert sorted(p.name for p in ref_dir.iterdir()) == ["readme.txt"]

    # created once, mounted for both
    assert mounts(ca)["/srv/team"]["Name"] == mounts(cb)["/srv/team"]["Name"] == f"{prefix}-team"
    assert mounts(ca)["/srv/reference"]["RW"] is False
    assert mounts(ca)["/srv/team"]["RW"] is True
    log = hub.log_text()
    assert log.count(f"Created volume {prefix}-team ") == 1
    assert log.count(f"Created volume {prefix}-reference ") == 1
    # once per hub, naming the options but not their values
    assert log.count(f"Volume {prefix}-legacy exists with other settings (device, o, type)") == 1
    team = docker_client.volumes.get(f"{prefix}-team")
    assert team.attrs["Options"]["device"] == str(team_dir)  # resolved at creation
    assert team.attrs["Labels"]["jupyterhub-ext.scope"] == "shared"
    assert "jupyterhub-ext.owner-id" not in team.attrs["Labels"]

    # no secret in the hub's (debug) log, nor in any API answer (server state included)
    assert str(team_dir) not in log and token not in log
    assert "${env:JHEXT_TEST_TEAM_DEVICE}" not in log
    for path in ("/users", "/users/alice", "/users/bob"):
        r = hub.api("GET", path, params={"include_stopped_servers": "1"})
        assert r.status_code == 200 and '"servers"' in r.text
        assert token not in r.text and "JHEXT_TEST" not in r.text

    # after a restart of alice's server the share still holds everyone's files
    hub.stop_server("alice")
    hub.spawn("alice")
    code, out = run_in(hub.container("alice"), "cat /srv/team/from-bob.txt")
    assert (code, out.strip()) == (0, "hello-from-bob")
    assert hub.log_text().count(f"Created volume {prefix}-team ") == 1
    assert token not in hub.log_text()


def test_secret_in_a_failing_mount_error_is_masked(make_hub, run_prefix, monkeypatch):
    password = "pw-" + secrets.token_hex(10)
    monkeypatch.setenv("JHEXT_TEST_CIFS_PASSWORD", password)
    prefix = f"{run_prefix}-{secrets.token_hex(2)}"
    hub = make_hub(
        volume_set(
            {
                "home": {"name": f"{prefix}-{{username}}-home", "mount": "/home/jovyan"},
                "nas": {
                    "name": f"{prefix}-nas",
                    "mount": "/srv/nas",
                    "scope": "shared",
                    # nothing serves CIFS on loopback: Docker's mount error
                    # repeats these options, password included
                    "driver_opts": {
                        "type": "cifs",
                        "device": "//127.0.0.1/share",
                        "o": "addr=127.0.0.1,username=lab,password=${env:JHEXT_TEST_CIFS_PASSWORD}",
                    },
                },
            }
        ),
        prefix=prefix,
    )
    hub.create_user("eve")
    r = hub.api("POST", "/users/eve/server")
    answers = [r.text]
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        u = hub.user("eve")
        answers.append(str(u))
        if not u.get("pending") and not u.get("servers"):
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"eve's spawn neither failed nor finished:\n{hub.log_tail()}")
    log = hub.log_text()
    # the mount really failed with Docker's message, and it was masked
    assert "failed to mount local volume" in log
    assert "password=********" in log
    assert password not in log
    for text in answers:
        assert password not in text
    # the volume itself was created with the resolved password (Docker keeps it)
    client = docker.from_env(version="auto")
    assert client.volumes.get(f"{prefix}-nas").attrs["Options"]["o"].endswith(password)


# -- clean-up on delete ---------------------------------------------------------------


def _wait_gone(client: docker.DockerClient, name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            client.volumes.get(name)
        except docker.errors.NotFound:
            return
        time.sleep(0.5)
    raise AssertionError(f"volume {name} still exists after {timeout}s")


def test_deleting_user_and_named_server_removes_exactly_their_volumes(
    make_hub, run_prefix, docker_client
):
    prefix = f"{run_prefix}-{secrets.token_hex(2)}"
    config = volume_set(
        {
            "home": {"name": f"{prefix}-{{username}}-home", "mount": "/home/jovyan"},
            "scratch": {
                "name": f"{prefix}-{{username}}-{{servername}}-scratch",
                "mount": "/scratch",
            },
            "cache": {"name": f"{prefix}-{{username}}-cache", "mount": "/opt/cache"},
            "team": {"name": f"{prefix}-team", "mount": "/srv/team", "scope": "shared"},
        }
    )
    config += """
c.JupyterHub.allow_named_servers = True
c.ExtDockerSpawner.remove_volumes_on_delete = True
# stopped containers stay and hold their volumes: delete must remove them first
c.ExtDockerSpawner.remove = False
"""
    hub = make_hub(config, prefix=prefix)
    hub.spawn("alice")
    hub.spawn("alice", "lab")
    hub.spawn("bob")
    # the REST API does not show ids; the owner label on her home volume does
    alice_id = docker_client.volumes.get(f"{prefix}-alice-home").attrs["Labels"][
        "jupyterhub-ext.owner-id"
    ]
    assert alice_id.isdigit()
    # alice's owner label but a name outside the volume set: kept
    docker_client.volumes.create(
        f"{prefix}-stray-{alice_id}", labels={"jupyterhub-ext.owner-id": alice_id}
    )
    before = volume_names(docker_client, prefix)
    assert before >= {
        f"{prefix}-alice-home",
        f"{prefix}-alice--scratch",
        f"{prefix}-alice-lab-scratch",
        f"{prefix}-bob-home",
        f"{prefix}-bob--scratch",
        f"{prefix}-bob-cache",
        f"{prefix}-team",
    }

    # 1. deleting the named server removes only its own {servername} volume
    r = hub.api("DELETE", "/users/alice/servers/lab", json={"remove": True})
    assert r.status_code in (202, 204), r.text
    _wait_gone(docker_client, f"{prefix}-alice-lab-scratch")
    deadline = time.monotonic() + 30
    while "lab" in hub.user("alice").get("servers", {}) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert volume_names(docker_client, prefix) == before - {f"{prefix}-alice-lab-scratch"}
    assert hub.container("alice", "lab") is None
    assert hub.container("alice") is not None

    # A volume that has alice's name but is not hers (another owner id): kept.
    # Her spawns refuse such a volume (test_boundary_ownership_docker.py), so
    # it is put in place of her own cache while her default server is away.
    hub.stop_server("alice")
    hub.container("alice").remove()  # remove=False kept it, holding the cache
    docker_client.volumes.get(f"{prefix}-alice-cache").remove()
    docker_client.volumes.create(
        f"{prefix}-alice-cache",
        labels={"jupyterhub-ext.owner-id": "999999", "jupyterhub-ext.owner-name": "alice"},
    )

    # 2. deleting the user removes the rest of hers
    r = hub.api("DELETE", "/users/alice")
    assert r.status_code == 204, r.text
    after = volume_names(docker_client, prefix)
    assert after == before - {
        f"{prefix}-alice-lab-scratch",
        f"{prefix}-alice-home",
        f"{prefix}-alice--scratch",
    }
    # untouched: bob's, the shared one, the look-alike and the stray
    assert {f"{prefix}-alice-cache", f"{prefix}-stray-{alice_id}", f"{prefix}-team"} <= after
    assert hub.container("alice") is None
    assert hub.container("bob") is not None
    code, _ = run_in(hub.container("bob"), "ls /home/jovyan")
    assert code == 0

    log = hub.log_text()
    assert f"Deleted server alice/lab: removed volumes [{prefix}-alice-lab-scratch]\n" in log
    assert (
        f"Deleted user alice: removed volumes [{prefix}-alice-home, {prefix}-alice--scratch]; "
        f"kept, not theirs: {{'{prefix}-alice-cache': \"volume {prefix}-alice-cache belongs "
        "to another user (owner id 999999, name 'alice'), not to 'alice'\"}\n"
    ) in log
    assert (
        f"Not removing volume {prefix}-alice-cache: volume {prefix}-alice-cache belongs to "
        "another user (owner id 999999"
    ) in log
    assert (
        'AUDIT actor="jupyterhub" action="delete-volumes" target="alice" result="ok" '
        f'failed={{}} kept_not_owned=["{prefix}-alice-cache"] '
        f'removed=["{prefix}-alice-home", "{prefix}-alice--scratch"]'
    ) in log
    assert 'target="alice/lab" result="ok"' in log


def test_deleting_user_keeps_volumes_when_option_off(make_hub, run_prefix, docker_client):
    prefix = f"{run_prefix}-{secrets.token_hex(2)}"
    hub = make_hub(
        volume_set(
            {
                "home": {"name": f"{prefix}-{{username}}-home", "mount": "/home/jovyan"},
                "team": {"name": f"{prefix}-team", "mount": "/srv/team", "scope": "shared"},
            }
        ),
        prefix=prefix,
    )
    hub.spawn("carol")
    hub.spawn("dave")
    before = volume_names(docker_client, prefix)
    assert before == {f"{prefix}-carol-home", f"{prefix}-dave-home", f"{prefix}-team"}
    r = hub.api("DELETE", "/users/carol")
    assert r.status_code == 204, r.text
    assert hub.api("GET", "/users/carol").status_code == 404
    assert volume_names(docker_client, prefix) == before
    log = hub.log_text()
    assert (
        f"Keeping volumes {prefix}-carol-home of deleted carol (remove_volumes_on_delete is off)"
        in log
    )
    assert "removed volumes" not in log
