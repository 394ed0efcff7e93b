"""Per-profile idle timeouts on a real hub with real servers: the short profile's
server is culled, the other profile's is not; the note survives in the notes file."""

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
    notes = json.loads((hub.workdir / "jupyterhub_ext_culled.json").read_text())
    assert notes["alice"][""]["idle_seconds"] >= 20


def test_culling_off_keep_running_says_so(make_hub):
    hub = make_hub()  # no c.CullerConfig.enabled
    hub.create_user("carol")
    auth = {"Authorization": f"token {hub.token_for('carol')}"}
    url = f"{hub.url}/hub/api/users/carol/keep-running"
    r = requests.get(url, headers=auth, timeout=30)
    assert r.status_code == 200 and r.json()["enabled"] is False, r.text
    r = requests.post(url, headers=auth, timeout=30)
    assert r.status_code == 404 and "CullerConfig.enabled" in r.json()["message"], r.text
