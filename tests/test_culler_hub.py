"""Per-profile idle timeouts on a real hub with real servers: the short profile's
server is culled, the other profile's is not; the note survives in the state file.
Keep-running extensions survive a hub restart; the named-server route, as its
owner and as attackers."""

from __future__ import annotations

import json
import time

import pytest
import requests

pytestmark = [pytest.mark.docker]

CONFIG = """
c.ExtDockerSpawner.profiles = [
    {"slug": "long", "display_name": "Long", "default": True},
    {"slug": "short", "display_name": "Short (GPU-like)"},
]
c.CullerConfig.enabled = True
c.CullerConfig.timeout = 600
c.CullerConfig.profile_timeouts = {"short": 20}
c.CullerConfig.warning = 0
c.CullerConfig.interval = 2
"""


def test_per_profile_timeout_culls_only_that_profile(make_hub):
    hub = make_hub(CONFIG)
    hub.spawn("alice", options={"profile": "short"})
    hub.spawn("bob")  # the default profile, "long"
    t0 = time.time()
    hub.wait_stopped("alice", timeout=60)
    # culled by the 20 s timeout counted from its last activity (its start)
    assert time.time() - t0 < 50
    assert hub.server("bob")["ready"]
    log = hub.log_text()
    line = next(x for x in log.splitlines() if 'action="cull-server"' in x)
    assert 'target="alice"' in line and 'profile="short"' in line and "timeout=20" in line
    assert 'target="bob"' not in "".join(x for x in log.splitlines() if 'action="cull-server"' in x)
    # counted for Prometheus where the audit line is written
    scraped = hub.session.get(f"{hub.url}/hub/metrics", timeout=10).text
    assert 'jupyterhub_ext_actions_total{action="cull",result="ok"} 1.0' in scraped

    bob = requests.get(
        f"{hub.url}/hub/api/users/bob/keep-running",
        headers={"Authorization": f"token {hub.token_for('bob')}"},
        timeout=30,
    ).json()
    assert bob["servers"][""]["timeout"] == 600 and bob["culled"] == {}
    alice = requests.get(
        f"{hub.url}/hub/api/users/alice/keep-running",
        headers={"Authorization": f"token {hub.token_for('alice')}"},
        timeout=30,
    ).json()
    assert alice["servers"] == {} and alice["culled"][""]["timeout"] == 20
    # kept on disk for the next visit, even after a hub restart
    state = json.loads((hub.workdir / "jupyterhub_ext_culler.json").read_text())
    assert state["notes"]["alice"][""]["idle_seconds"] >= 20


def test_culling_off_keep_running_says_so(make_hub):
    hub = make_hub()  # no c.CullerConfig.enabled
    hub.create_user("carol")
    auth = {"Authorization": f"token {hub.token_for('carol')}"}
    url = f"{hub.url}/hub/api/users/carol/keep-running"
    r = requests.get(url, headers=auth, timeout=30)
    assert r.status_code == 200 and r.json()["enabled"] is False, r.text
    r = requests.post(url, headers=auth, timeout=30)
    assert r.status_code == 404 and "CullerConfig.enabled" in r.json()["message"], r.text


KEEP = """
c.JupyterHub.cleanup_servers = False
c.JupyterHub.allow_named_servers = True
c.CullerConfig.enabled = True
c.CullerConfig.timeout = 600
c.CullerConfig.warning = 0
c.CullerConfig.extension = 3600
c.CullerConfig.max_extensions = 1
c.CullerConfig.interval = 2
"""


def keep(hub, token: str, path: str, method: str = "POST") -> requests.Response:
    return requests.request(
        method,
        f"{hub.url}/hub/api/users/{path}/keep-running",
        headers={"Authorization": f"token {token}"},
        timeout=30,
    )


def test_extensions_survive_a_hub_restart_for_that_start_only(make_hub):
    hub = make_hub(KEEP)
    hub.spawn("alice")
    r = keep(hub, hub.token_for("alice"), "alice")
    assert r.status_code == 200, r.text
    before = r.json()
    assert before["extensions_used"] == 1 and before["extensions_left"] == 0
    assert before["deadline"] > time.time() + 3000  # the extension, not the 600 s timeout
    # in the state file, written off the event loop
    state = wait_for_state(hub, lambda s: s["extensions"])
    assert state["extensions"][0]["user"] == "alice" and state["extensions"][0]["used"] == 1

    # the hub restarts; the server keeps running (cleanup_servers = False)
    hub.stop()
    hub.start()
    hub.wait_ready("alice")
    token = hub.token_for("alice")
    after = keep(hub, token, "alice", "GET").json()["servers"][""]
    assert after["deadline"] == before["deadline"]
    assert (after["extensions_used"], after["extensions_left"]) == (1, 0)
    r = keep(hub, token, "alice")
    assert r.status_code == 409 and "most allowed (1)" in r.json()["message"], r.text
    time.sleep(3)  # a check of the culler ran since: it kept them too
    assert keep(hub, token, "alice", "GET").json()["servers"][""]["extensions_used"] == 1

    # a new start of the server begins afresh
    hub.stop_server("alice")
    wait_for_state(hub, lambda s: not s["extensions"])
    hub.spawn("alice")
    fresh = keep(hub, token, "alice", "GET").json()["servers"][""]
    assert (fresh["extensions_used"], fresh["extensions_left"]) == (0, 1)
    assert keep(hub, token, "alice").status_code == 200


def wait_for_state(hub, check, timeout: float = 20) -> dict:
    path = hub.workdir / "jupyterhub_ext_culler.json"
    deadline = time.monotonic() + timeout
    while True:
        state = json.loads(path.read_text()) if path.exists() else None
        if state is not None and check(state):
            return state
        assert time.monotonic() < deadline, state
        time.sleep(0.2)


def test_named_server_keep_running_and_its_attackers(make_hub):
    hub = make_hub(KEEP)
    hub.spawn("alice", "lab2")
    hub.create_user("mallory")
    alice, mallory = hub.token_for("alice"), hub.token_for("mallory")
    narrow = hub.token_for("alice", scopes=["read:servers!user=alice"])

    # the attackers first: another user, and alice's own read-only token
    for path in ("alice/servers/lab2", "alice"):
        for method in ("POST", "GET"):
            r = keep(hub, mallory, path, method)
            assert r.status_code in (403, 404), (path, method, r.status_code, r.text)
            assert "deadline" not in r.text
    r = keep(hub, narrow, "alice/servers/lab2")
    assert r.status_code == 403, r.text
    # mallory's own name with alice's server name: not a way in
    r = keep(hub, mallory, "mallory/servers/lab2")
    assert r.status_code == 404 and "no server named 'lab2'" in r.json()["message"], r.text
    # alice's default server is not running
    r = keep(hub, alice, "alice")
    assert r.status_code == 400 and "not running" in r.json()["message"], r.text
    listed = keep(hub, alice, "alice/servers/lab2", "GET").json()["servers"]
    assert list(listed) == ["lab2"] and listed["lab2"]["extensions_used"] == 0

    r = keep(hub, alice, "alice/servers/lab2")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["server"] == "lab2" and body["extensions_used"] == 1
    assert body["deadline"] > time.time() + 3000
    seen = keep(hub, narrow, "alice/servers/lab2", "GET").json()["servers"]["lab2"]
    assert seen["deadline"] == body["deadline"] and seen["extensions_left"] == 0
    r = keep(hub, alice, "alice/servers/lab2")
    assert r.status_code == 409, r.text
    log = hub.log_text()
    assert 'actor="alice" action="keep-running" target="alice/lab2" result="ok"' in log
    assert 'actor="mallory"' not in "".join(
        x for x in log.splitlines() if 'action="keep-running"' in x and 'result="ok"' in x
    )
    assert hub.server("alice", "lab2")["ready"]
