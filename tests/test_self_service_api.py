"""Self-service restart and volume reset through the JSON API, on a real hub and engine."""

from __future__ import annotations

import threading
import time

import docker
import pytest
import requests

from hubctl import run_in

pytestmark = pytest.mark.docker

FOUR_VOLUMES = """
c.JupyterHub.allow_named_servers = True
c.ExtDockerSpawner.volume_set = {{
    "home": {{"name": "{p}-{{username}}-home", "mount": "/home/jovyan",
              "description": "Your home directory"}},
    "cache": {{"name": "{p}-{{username}}-cache", "mount": "/srv/cache",
               "description": "Caches, safe to reset"}},
    "workspace": {{"name": "{p}-{{username}}-work", "mount": "/srv/work",
                   "description": "Project workspace", "resettable": False}},
    "shared": {{"name": "{p}-shared-data", "mount": "/srv/shared",
                "description": "Data for everyone", "scope": "shared"}},
}}
"""


def configure(make_hub, extra: str):
    """A hub whose config has ``extra`` (formatted with the hub's prefix as {p})."""
    hub = make_hub(start=False)
    hub.config_file.write_text(
        hub.config_file.read_text().replace("jupyterhub_ext.setup(c)", "")
        + extra.format(p=hub.prefix)
        + "\njupyterhub_ext.setup(c)\n"
    )
    return hub.start()


def as_user(hub, token: str, method: str, path: str, **kw) -> requests.Response:
    kw.setdefault("timeout", 120)
    headers = {"Authorization": f"token {token}", **kw.pop("headers", {})}
    return requests.request(method, f"{hub.url}/hub/api{path}", headers=headers, **kw)


def env_of(container) -> dict[str, str]:
    container.reload()
    return dict(e.split("=", 1) for e in container.attrs["Config"]["Env"])


def audit_lines(hub) -> list[str]:
    return [line for line in hub.log_text().splitlines() if "jupyterhub_ext.audit" in line]


def test_restart_applies_group_grant_and_refuses_bad_states(make_hub):
    hub = configure(
        make_hub,
        """
c.JupyterHub.allow_named_servers = True
# wait for the new spawn inside the request: a normal restart answers 200
c.JupyterHub.tornado_settings = {{"slow_spawn_timeout": 90}}
c.ExtDockerSpawner.group_overrides = {{
    "10-granted": {{"groups": ["granted"],
                    "spawner_override": {{"environment": {{"JHEXT_GRANTED": "yes"}}}}}},
    "20-broken": {{"groups": ["broken"],
                   "spawner_override": {{"image": "jhext-missing/image:none",
                                         "pull_policy": "never"}}}},
}}
""",
    )
    hub.create_user("alice")
    tok = hub.token_for("alice")

    # not running: 400, nothing started
    r = as_user(hub, tok, "POST", "/users/alice/restart-server")
    assert r.status_code == 400, r.text
    assert "not running" in r.json()["message"]
    assert hub.server("alice") is None

    hub.spawn("alice")
    old = hub.container("alice")
    assert run_in(old, "echo kept > ~/keep.txt")[0] == 0
    assert "JHEXT_GRANTED" not in env_of(old)

    # a group grant made while the server runs ...
    hub.api("POST", "/groups/granted").raise_for_status()
    hub.api("POST", "/groups/granted/users", json={"users": ["alice"]}).raise_for_status()

    # ... applies after a restart; a second restart meanwhile is refused (409)
    results: dict[str, requests.Response] = {}

    def restart():
        results["first"] = as_user(hub, tok, "POST", "/users/alice/restart-server")

    t = threading.Thread(target=restart)
    t.start()
    time.sleep(0.5)
    second = as_user(hub, tok, "POST", "/users/alice/restart-server")
    t.join()
    assert second.status_code == 409, second.text
    assert "restarting" in second.json()["message"] or "pending" in second.json()["message"]
    first = results["first"]
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["status"] == "ready" and body["server"]["ready"] is True

    new = hub.container("alice")
    assert new.id != old.id, "restart must create a new container (hub-aware respawn)"
    assert env_of(new)["JHEXT_GRANTED"] == "yes"
    assert run_in(new, "cat ~/keep.txt") == (0, "kept\n")
    # the proxy route points at the new server
    r = requests.get(
        f"{hub.url}/user/alice/api/status", headers={"Authorization": f"token {tok}"}, timeout=30
    )
    assert r.status_code == 200, r.text

    # named servers: same action on their own route
    hub.spawn("alice", "lab")
    old_lab = hub.container("alice", "lab")
    r = as_user(hub, tok, "POST", "/users/alice/servers/lab/restart-server")
    assert r.status_code == 200, r.text
    assert r.json()["server"]["name"] == "lab"
    hub.wait_ready("alice", "lab")
    assert hub.container("alice", "lab").id != old_lab.id
    assert hub.container("alice").id == new.id, "the default server was not touched"
    assert as_user(hub, tok, "POST", "/users/alice/servers/nope/restart-server").status_code == 404

    # a restart whose new start fails says so (500) and leaves the server stopped
    hub.api("POST", "/groups/broken").raise_for_status()
    hub.api("POST", "/groups/broken/users", json={"users": ["alice"]}).raise_for_status()
    r = as_user(hub, tok, "POST", "/users/alice/restart-server")
    assert r.status_code == 500, r.text
    assert "could not start again" in r.json()["message"], r.json()
    assert "jhext-missing/image:none" in r.json()["message"]
    assert hub.server("alice") is None

    lines = audit_lines(hub)
    assert any(
        'actor="alice" action="restart-server" target="alice" result="ok"' in line for line in lines
    )
    assert any(
        'target="alice" result="failed"' in line and 'stage="start"' in line for line in lines
    )
    assert any('target="alice/lab" result="ok"' in line for line in lines)
    assert any('target="alice" result="refused"' in line and "status=409" in line for line in lines)
    assert any('target="alice" result="refused"' in line and "status=400" in line for line in lines)


def test_reset_volumes_api(make_hub, docker_client, lab_image):
    hub = configure(make_hub, FOUR_VOLUMES + "\nc.ExtDockerSpawner.remove = False\n")
    p = hub.prefix
    hub.create_user("alice")
    hub.create_user("admin")
    tok = hub.token_for("alice")
    # another user's volume with the same shape: must never be touched
    bob_home = docker_client.volumes.create(f"{p}-bob-home")

    hub.spawn("alice")
    c = hub.container("alice")
    assert run_in(c, "echo h > ~/h.txt")[0] == 0
    for d, f in (("cache", "c"), ("work", "w"), ("shared", "s")):
        assert run_in(c, f"echo {f} > /srv/{d}/{f}.txt", user="root")[0] == 0

    # listing: every volume of the set, with what a user may see
    r = as_user(hub, tok, "GET", "/users/alice/manage-volumes")
    assert r.status_code == 200, r.text
    vols = {v["key"]: v for v in r.json()["volumes"]}
    assert list(vols) == ["home", "cache", "workspace", "shared"]
    assert vols["home"] | {"size": None} == {
        "key": "home",
        "name": f"{p}-alice-home",
        "mount": "/home/jovyan",
        "description": "Your home directory",
        "resettable": True,
        "scope": "user",
        "read_only": False,
        "exists": True,
        "size": None,
    }
    assert vols["workspace"]["resettable"] is False
    assert vols["shared"]["resettable"] is False and vols["shared"]["scope"] == "shared"
    assert all(v["exists"] for v in vols.values())
    assert r.json()["blocking_servers"] == ["default"]
    # sizes come from a cached `docker system df`, computed off the event loop
    deadline = time.monotonic() + 30
    while not isinstance(vols["home"]["size"], int) and time.monotonic() < deadline:
        time.sleep(1)
        r = as_user(hub, tok, "GET", "/users/alice/manage-volumes")
        vols = {v["key"]: v for v in r.json()["volumes"]}
    assert isinstance(vols["home"]["size"], int) and vols["home"]["size"] > 0

    # running: 409, nothing removed
    r = as_user(hub, tok, "DELETE", "/users/alice/manage-volumes", json={"volumes": ["home"]})
    assert r.status_code == 409, r.text
    assert "Stop these servers" in r.json()["message"] and "default" in r.json()["message"]
    assert docker_client.volumes.get(f"{p}-alice-home")

    hub.stop_server("alice")
    stopped = hub.container("alice")
    assert stopped is not None and stopped.status == "exited"  # remove=False keeps it

    # bad requests: a JSON 400 saying what is wrong, and nothing lost
    bad = [
        (b"{not json", "Invalid JSON"),
        (b"", "must be a JSON object"),
        (b'["home"]', "must be a JSON object"),
        (b"{}", "non-empty list"),
        (b'{"volumes": []}', "non-empty list"),
        (b'{"volumes": "home"}', "non-empty list"),
        (b'{"volumes": [1]}', "strings"),
        (b'{"volumes": ["home"], "force": true}', "unknown field"),
        (b'{"volumes": ["nope"]}', "no volume with key 'nope'"),
        (b'{"volumes": ["shared"]}', "shared volumes are never reset"),
        (b'{"volumes": ["workspace"]}', "protected"),
        (f'{{"volumes": ["{p}-bob-home"]}}'.encode(), "no volume with key"),
        (f'{{"volumes": ["{p}-shared-data"]}}'.encode(), "no volume with key"),
    ]
    for raw, msg in bad:
        r = as_user(
            hub,
            tok,
            "DELETE",
            "/users/alice/manage-volumes",
            data=raw,
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 400, (raw, r.status_code, r.text)
        assert r.headers["Content-Type"].startswith("application/json")
        assert msg in r.json()["message"], (raw, r.json())
    names = {v.name for v in docker_client.volumes.list(filters={"name": p})}
    assert {f"{p}-alice-{k}" for k in ("home", "cache", "work")} | {
        f"{p}-shared-data",
        f"{p}-bob-home",
    } <= names

    # a foreign container holding a volume: that volume fails, the container is kept
    foreign = docker_client.containers.create(
        lab_image,
        name=f"{p}-foreign",
        command="true",
        network_mode="none",
        volumes={f"{p}-alice-cache": {"bind": "/x"}},
    )
    r = as_user(hub, tok, "DELETE", "/users/alice/manage-volumes", json={"volumes": ["cache"]})
    assert r.status_code == 500, r.text
    (res,) = r.json()["volumes"]
    assert res["key"] == "cache" and res["status"] == "failed" and not res["ok"]
    assert f"{p}-foreign" in res["message"] and "not one of this user's servers" in res["message"]
    foreign.reload()  # still there
    docker_client.volumes.get(f"{p}-alice-cache")
    foreign.remove()

    # reset home only: alice's stopped container is removed first, then the volume
    r = as_user(hub, tok, "DELETE", "/users/alice/manage-volumes", json={"volumes": ["home"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ok"] is True
    (res,) = body["volumes"]
    assert res["key"] == "home" and res["name"] == f"{p}-alice-home" and res["status"] == "reset"
    assert res["removed_containers"] == [stopped.name]
    with pytest.raises(docker.errors.NotFound):
        docker_client.volumes.get(f"{p}-alice-home")
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(stopped.id)
    bob_home.reload()  # another user's volume survives

    # an absent volume is reported, not an error
    r = as_user(hub, tok, "DELETE", "/users/alice/manage-volumes", json={"volumes": ["home"]})
    assert r.status_code == 200 and r.json()["volumes"][0]["status"] == "absent"

    # a volume of the set that is labelled as another user's is never removed
    impostor = docker_client.volumes.create(
        f"{p}-alice-home", labels={"jupyterhub-ext.owner-id": "987654"}
    )
    r = as_user(hub, tok, "DELETE", "/users/alice/manage-volumes", json={"volumes": ["home"]})
    assert r.status_code == 409, r.text  # a refusal, with the reason
    assert r.json()["volumes"][0]["status"] == "refused"
    assert "belongs to another user" in r.json()["volumes"][0]["message"]
    impostor.reload()
    impostor.remove()

    # next start: home is fresh and empty, the others kept their files
    hub.spawn("alice")
    c = hub.container("alice")
    assert run_in(c, "test -e ~/h.txt")[0] != 0
    assert run_in(c, "cat /srv/cache/c.txt /srv/work/w.txt /srv/shared/s.txt") == (
        0,
        "c\nw\ns\n",
    )

    lines = audit_lines(hub)
    assert any(
        'actor="alice" action="reset-volumes" target="alice" result="ok"' in line
        and '"home": "reset"' in line
        for line in lines
    )
    assert any('action="reset-volumes"' in line and 'result="failed"' in line for line in lines)
    assert any(
        'action="reset-volumes"' in line and 'result="refused"' in line and "status=409" in line
        for line in lines
    )


def test_start_racing_reset_never_sees_half_reset_set(make_hub, docker_client):
    hub = configure(
        make_hub,
        """
c.ExtDockerSpawner.volume_set = {{
    "home": {{"name": "{p}-{{username}}-home", "mount": "/home/jovyan"}},
    "cache": {{"name": "{p}-{{username}}-cache", "mount": "/srv/cache"}},
}}
""",
    )
    hub.create_user("alice")
    tok = hub.token_for("alice")
    hub.spawn("alice")
    c = hub.container("alice")
    # 100k files make the cache volume's removal last about a second: a window
    # in which a start must wait (without the lock it would mount a fresh home
    # next to the old cache)
    fill = (
        "import os\nos.makedirs('/srv/cache/many', exist_ok=True)\n"
        "for i in range(100000): open(f'/srv/cache/many/f{i}', 'w').close()\n"
        "open('/srv/cache/marker', 'w').write('old')\nopen('/home/jovyan/marker', 'w').write('old')"
    )
    code, out = run_in(c, f'python3 -c "{fill}"', user="root")
    assert code == 0, out
    hub.stop_server("alice")

    # 1) reset first, start while the reset holds the lock: the start waits
    log_mark = len(hub.log_text())
    times: dict[str, float] = {}
    answers: dict[str, requests.Response] = {}

    def reset():
        answers["reset"] = as_user(
            hub, tok, "DELETE", "/users/alice/manage-volumes", json={"volumes": ["home", "cache"]}
        )
        times["reset_done"] = time.monotonic()

    t = threading.Thread(target=reset)
    t.start()
    deadline = time.monotonic() + 30
    while "Resetting volumes" not in hub.log_text()[log_mark:]:
        assert time.monotonic() < deadline, hub.log_tail()
        time.sleep(0.02)
    times["start_sent"] = time.monotonic()
    start = as_user(hub, tok, "POST", "/users/alice/server")
    t.join()
    assert start.status_code in (201, 202), start.text
    assert answers["reset"].status_code == 200, answers["reset"].text
    assert [v["status"] for v in answers["reset"].json()["volumes"]] == ["reset", "reset"]
    assert times["start_sent"] < times["reset_done"], "the start did not overlap the reset"
    print(f"start sent {times['reset_done'] - times['start_sent']:.2f}s before the reset ended")
    hub.wait_ready("alice")
    c = hub.container("alice")
    code, out = run_in(c, "ls -A /home/jovyan /srv/cache")
    assert "marker" not in out and "many" not in out, out  # both fresh, never one of them
    # the start created its volumes only after the reset had finished
    log = hub.log_text()[log_mark:]
    reset_end = log.index('action="reset-volumes" target="alice" result="ok"')
    for key in ("home", "cache"):
        assert log.index(f"Created volume {hub.prefix}-alice-{key} ({key})") > reset_end

    # 2) start first, reset while the spawn is pending: refused, nothing removed
    assert (
        run_in(c, "echo new > /home/jovyan/marker; echo new > /srv/cache/marker", user="root")[0]
        == 0
    )
    hub.stop_server("alice")
    t = threading.Thread(
        target=lambda: answers.update(start=hub.api("POST", "/users/alice/server"))
    )
    t.start()
    deadline = time.monotonic() + 30
    while not (hub.user("alice").get("pending") == "spawn"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    r = as_user(
        hub, tok, "DELETE", "/users/alice/manage-volumes", json={"volumes": ["home", "cache"]}
    )
    t.join()
    assert r.status_code == 409, r.text
    hub.wait_ready("alice")
    c = hub.container("alice")
    assert run_in(c, "cat ~/marker /srv/cache/marker") == (0, "new\nnew\n")


def test_home_page_composes_with_native_authenticator_page(make_hub):
    """Our home.html and NativeAuthenticator's page.html both apply (we ship no page.html).

    Logged in through DummyAuthenticator: NativeAuthenticator 1.3's own login
    handler fails on JupyterHub 6.1.1 (it uses the removed ``self.statsd``).
    """
    hub = make_hub(
        """
import os, nativeauthenticator
c.JupyterHub.template_paths = [
    os.path.join(os.path.dirname(nativeauthenticator.__file__), "templates")
]
"""
    )
    page = hub.login("alice").get(f"{hub.url}/hub/home", timeout=30)
    assert page.status_code == 200
    assert 'href="/hub/change-password"' in page.text  # NativeAuthenticator's page.html
    assert 'id="jhext-manage-volumes"' in page.text  # our home.html
    assert 'id="jhext-volumes-dialog"' in page.text
