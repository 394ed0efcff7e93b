"""Notification broadcast through a real hub to real single-user servers.

Real engine, real JupyterHub + proxy, real jupyterlab-notifications-extension
in the lab image; the plain image lacks the extension.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from hubctl import ROOT, Hub, run_in

pytestmark = pytest.mark.docker

SERVICE = "jupyterhub-ext-notifier"
QUEUE = "jupyterlab-notifications-extension/notifications"
CROSS_SITE_FETCH = {"Sec-Fetch-Mode": "cors", "Sec-Fetch-Site": "cross-site"}

# carol's server runs the image without the extension
PLAIN_FOR_CAROL = """
def _image_for(spawner):
    if spawner.user.name == "carol":
        spawner.image = "{plain}"

c.Spawner.pre_spawn_hook = _image_for
"""


def spawn_all(hub: Hub, names: list[str]) -> None:
    """Start several servers at once (each spawn takes seconds under load)."""
    for name in names:
        hub.create_user(name)
        r = hub.api("POST", f"/users/{name}/server", json={})
        assert r.status_code in (201, 202), r.text
    for name in names:
        hub.wait_ready(name)


def drain(hub: Hub, name: str, token: str) -> list[dict]:
    """Take everything queued in a server's extension (through the proxy)."""
    r = requests.get(
        f"{hub.url}/user/{name}/{QUEUE}", headers={"Authorization": f"token {token}"}, timeout=30
    )
    assert r.status_code == 200, (name, r.status_code, r.text[:200])
    return r.json()["notifications"]


def broadcast_tokens_in_db(hub: Hub) -> int:
    with sqlite3.connect(hub.workdir / "jupyterhub.sqlite") as db:
        (services,) = db.execute(
            "SELECT COUNT(*) FROM services WHERE name = ?", (SERVICE,)
        ).fetchone()
        assert services == 1, "the delivery service is registered in the hub database"
        (n,) = db.execute(
            "SELECT COUNT(*) FROM api_tokens t JOIN services s ON t.service_id = s.id "
            "WHERE s.name = ?",
            (SERVICE,),
        ).fetchone()
    return n


def cli(hub: Hub, token: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, JUPYTERHUB_API_URL=f"{hub.url}/hub/api", JUPYTERHUB_API_TOKEN=token)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "jupyterhub_ext.notifications.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_broadcast_reaches_running_lab_servers_only(make_hub, images):
    lab, plain = images
    hub = make_hub(
        PLAIN_FOR_CAROL.format(plain=plain) + "c.JupyterHub.allow_named_servers = True\n"
    )
    hub.create_user("admin")
    admin = hub.token_for("admin")
    spawn_all(hub, ["alice", "bob", "carol", "dave"])
    hub.spawn("alice", "gpu")  # a named server is a recipient of its own
    hub.stop_server("dave")  # dave was working earlier and has stopped
    user_tokens = {n: hub.token_for(n) for n in ("alice", "bob")}

    # the active list is what the page offers as recipients
    r = requests.get(
        f"{hub.url}/hub/api/notifications/active-servers",
        headers={"Authorization": f"token {admin}"},
        timeout=30,
    )
    assert r.status_code == 200
    assert [(s["username"], s["server"]) for s in r.json()["servers"]] == [
        ("alice", ""),
        ("alice", "gpu"),
        ("bob", ""),
        ("carol", ""),
    ]

    message = "<script>alert('x')</script> Maintenance at 18:00, save your work"
    r = requests.post(
        f"{hub.url}/hub/api/notifications/broadcast",
        headers={"Authorization": f"token {admin}"},
        json={"message": message, "variant": "warning", "autoClose": False},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    result = r.json()
    assert (result["total"], result["successful"], result["failed"]) == (4, 3, 1)
    details = {(d["username"], d["server"]): d for d in result["details"]}
    # stopped dave is not a target
    assert set(details) == {("alice", ""), ("alice", "gpu"), ("bob", ""), ("carol", "")}
    for key in [("alice", ""), ("alice", "gpu"), ("bob", "")]:
        assert details[key]["status"] == "delivered", details[key]
    assert details[("carol", "")]["status"] == "failed"
    assert "jupyterlab-notifications-extension is not installed" in details[("carol", "")]["error"]

    # each lab server's extension queue holds exactly that message, with that type
    for name, token in [*user_tokens.items(), ("alice/gpu", user_tokens["alice"])]:
        queued = drain(hub, name, token)
        assert [(n["message"], n["type"], n["autoClose"]) for n in queued] == [
            (message, "warning", False)
        ], name
    # the delivery used the service's short-lived token, and none is left behind
    assert f"GET /hub/api/user ({SERVICE}@" in hub.log_text()
    assert broadcast_tokens_in_db(hub) == 0

    # chosen recipients: a stopped user is reported, not silently skipped
    r = requests.post(
        f"{hub.url}/hub/api/notifications/broadcast",
        headers={"Authorization": f"token {admin}"},
        json={"message": "only alice and dave", "recipients": ["alice", {"username": "dave"}]},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    assert r.json()["details"] == [
        {"username": "alice", "server": "", "status": "delivered"},
        {"username": "dave", "server": "", "status": "failed", "error": "server not running"},
    ]
    assert [n["message"] for n in drain(hub, "alice", user_tokens["alice"])] == [
        "only alice and dave"
    ]
    assert drain(hub, "alice/gpu", user_tokens["alice"]) == []
    assert drain(hub, "bob", user_tokens["bob"]) == []

    # the CLI, as a cron job would run it
    out = cli(hub, admin, "Back at 18:00", "--type", "success", "--to", "alice/gpu", "--to", "bob")
    assert out.returncode == 0, out.stderr
    assert "2 of 2 delivered, 0 failed." in out.stdout
    assert out.stdout.count("delivered") == 3
    for name, token in [("alice/gpu", user_tokens["alice"]), ("bob", user_tokens["bob"])]:
        assert [(n["message"], n["type"]) for n in drain(hub, name, token)] == [
            ("Back at 18:00", "success")
        ]
    assert drain(hub, "alice", user_tokens["alice"]) == []
    out = cli(hub, admin, "Everyone", "--sticky")
    assert out.returncode == 1  # carol failed
    carol_line = next(line for line in out.stdout.splitlines() if line.startswith("carol"))
    assert "failed" in carol_line and "not installed" in carol_line
    assert "3 of 4 delivered, 1 failed." in out.stdout
    assert admin not in out.stdout + out.stderr
    out = cli(hub, admin, "x" * 141)
    assert out.returncode == 2
    assert "400" in out.stderr and "limit is 140" in out.stderr
    out = cli(hub, hub.token_for("bob"), "from bob")
    assert out.returncode == 2 and "403" in out.stderr

    # every broadcast left an audit line and a history entry
    log = hub.log_text()
    assert log.count('action="broadcast"') == 4
    assert 'actor="admin" action="broadcast" target="all running servers" result="3/4' in log
    history = requests.get(
        f"{hub.url}/hub/api/notifications/history",
        headers={"Authorization": f"token {admin}"},
        timeout=30,
    ).json()["history"]
    assert [h["message"] for h in history] == [
        "Everyone",
        "Back at 18:00",
        "only alice and dave",
        message,
    ]
    assert history[-1]["failures"][0]["username"] == "carol"
    assert broadcast_tokens_in_db(hub) == 0

    # the history survives a hub restart
    hub.stop()
    hub.start()
    again = requests.get(
        f"{hub.url}/hub/api/notifications/history",
        headers={"Authorization": f"token {admin}"},
        timeout=30,
    ).json()["history"]
    assert again == history
    assert broadcast_tokens_in_db(hub) == 0


def test_authorization_matrix_and_bad_input(make_hub):
    hub = make_hub(
        "c.NotificationsConfig.max_length = 60\nc.NotificationsConfig.max_recipients = 3\n"
    )
    for name in ("admin", "bro", "joe"):
        hub.create_user(name)
    r = hub.api("POST", "/groups/jupyterhub-ext-broadcasters")
    assert r.status_code in (201, 409), r.text
    r = hub.api("POST", "/groups/jupyterhub-ext-broadcasters/users", json={"users": ["bro"]})
    assert r.status_code == 200, r.text

    api = f"{hub.url}/hub/api/notifications"
    body = {"message": "hello", "variant": "info"}

    def by_token(token: str | None) -> dict[str, int]:
        h = {"Authorization": f"token {token}"} if token else {}
        return {
            "servers": requests.get(f"{api}/active-servers", headers=h, timeout=30).status_code,
            "history": requests.get(f"{api}/history", headers=h, timeout=30).status_code,
            "broadcast": requests.post(
                f"{api}/broadcast", headers=h, json=body, timeout=30
            ).status_code,
        }

    allowed = {"servers": 200, "history": 200, "broadcast": 200}
    denied = {"servers": 403, "history": 403, "broadcast": 403}
    assert by_token(hub.token_for("admin")) == allowed
    assert by_token(hub.token_for("bro")) == allowed  # delegated through the group
    assert by_token(hub.token_for("joe")) == denied
    admin_without_scope = hub.token_for("admin", scopes=["admin:users", "admin:servers"])
    assert by_token(admin_without_scope) == denied
    assert by_token(None) == denied
    r = requests.post(
        f"{api}/broadcast",
        headers={"Authorization": f"token {hub.token_for('joe')}"},
        json=body,
        timeout=30,
    )
    assert "custom:jupyterhub-ext:broadcast" in r.json()["message"]

    # cookie sessions (the page): scope decides, and XSRF is enforced
    def page_and_cookie_api(name: str) -> tuple[int, bool, int, int, int]:
        s = hub.login(name)
        page = s.get(f"{hub.url}/hub/notifications", timeout=30)
        home = s.get(f"{hub.url}/hub/home", timeout=30)
        xsrf = {"X-XSRFToken": s.cookies.get("_xsrf")}
        with_xsrf = s.post(f"{api}/broadcast", headers=xsrf, json=body, timeout=30)
        without_xsrf = s.post(f"{api}/broadcast", json=body, timeout=30)
        return (
            page.status_code,
            'id="jhext-nav-notifications"' in home.text,
            with_xsrf.status_code,
            without_xsrf.status_code,
            # a script's GET (what a cross-site page could send) needs XSRF too;
            # JupyterHub lets plain navigations (no Sec-Fetch-Mode) through
            s.get(f"{api}/history", headers=CROSS_SITE_FETCH, timeout=30).status_code,
        )

    assert page_and_cookie_api("admin") == (200, True, 200, 403, 403)
    assert page_and_cookie_api("bro") == (200, True, 200, 403, 403)
    assert page_and_cookie_api("joe") == (403, False, 403, 403, 403)
    anon = requests.get(f"{hub.url}/hub/notifications", allow_redirects=False, timeout=30)
    assert anon.status_code == 302 and "/hub/login" in anon.headers["Location"]

    # the page carries the configured limit; a 403 page says what is missing
    s = hub.login("admin")
    assert '"max_length": 60' in s.get(f"{hub.url}/hub/notifications", timeout=30).text
    assert (
        "jupyterhub-ext-broadcasters"
        in hub.login("joe").get(f"{hub.url}/hub/notifications", timeout=30).text
    )

    # bad input: a JSON 400 that says what to fix, and nothing is sent or recorded
    admin = {"Authorization": f"token {hub.token_for('admin')}"}
    before = requests.get(f"{api}/history", headers=admin, timeout=30).json()["history"]
    bad = [
        ({"message": ""}, "empty"),
        ({"message": "x" * 61}, "61 characters; the limit is 60"),
        ({"message": "hi", "variant": "loud"}, "Unknown type 'loud'"),
        ({"message": "hi", "autoClose": "soon"}, "autoClose"),
        ({"message": "hi", "recipients": []}, "omit it"),
        ({"message": "hi", "recipients": "joe"}, "must be a list"),
        ({"message": "hi", "recipients": ["nobody"]}, "Unknown user(s): nobody"),
        (
            {"message": "hi", "recipients": ["admin", "bro", "joe", "admin/x"]},
            "4 entries; the limit is 3",
        ),
    ]
    for payload, expected in bad:
        r = requests.post(f"{api}/broadcast", headers=admin, json=payload, timeout=30)
        assert r.status_code == 400, (payload, r.status_code)
        assert r.headers["Content-Type"].startswith("application/json")
        assert expected in r.json()["message"], (payload, r.json())
    r = requests.post(f"{api}/broadcast", headers=admin, data="{not json", timeout=30)
    assert r.status_code == 400
    r = requests.get(f"{api}/history?limit=-1", headers=admin, timeout=30)
    assert r.status_code == 400
    after = requests.get(f"{api}/history", headers=admin, timeout=30).json()["history"]
    assert after == before
    r = requests.post(f"{api}/broadcast", headers=admin, json={"message": "y" * 60}, timeout=30)
    assert r.status_code == 200 and r.json()["total"] == 0
    assert (
        requests.get(f"{api}/history?limit=1", headers=admin, timeout=30).json()["history"][0][
            "message"
        ]
        == "y" * 60
    )
    assert broadcast_tokens_in_db(hub) == 0


# -- trust boundary: what a recipient can do with what her server receives ------

# What a user can put in her persistent home: her own server's config. It
# records the Authorization header of every notification the hub delivers and
# holds the answer until ~/release exists, so the credential is still live
# while she uses it (she may answer as slowly as she likes: up to the timeout).
SPY_CONFIG = """
import asyncio, os, time
from jupyter_server.base import handlers

_home = os.path.expanduser("~")
_prepare = handlers.APIHandler.prepare

async def _spy(self):
    if self.request.path.endswith("/jupyterlab-notifications-extension/ingest"):
        with open(os.path.join(_home, "captured.txt"), "a") as f:
            f.write(self.request.headers.get("Authorization", "") + "\\n")
        deadline = time.monotonic() + 50
        while not os.path.exists(os.path.join(_home, "release")):
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
    return await _prepare(self)

handlers.APIHandler.prepare = _spy
"""
JOVYAN = "1000"  # the user inside her container (the image's jovyan)


def plant_spy(hub: Hub, name: str) -> None:
    """As ``name``, from a shell in her own container: install the spy, restart her server."""
    config = "~/.jupyter/jupyter_server_config.py"
    cmd = f"mkdir -p ~/.jupyter && cat > {config} <<'EOF'\n{SPY_CONFIG}EOF\n"
    code, out = run_in(hub.container(name), cmd, user=JOVYAN)
    assert code == 0, out
    hub.stop_server(name)
    hub.spawn(name)


def captured_token(hub: Hub, name: str, timeout: float = 60) -> str:
    """The credential her server recorded (read from her container, as she would)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code, out = run_in(hub.container(name), "cat ~/captured.txt 2>/dev/null", user=JOVYAN)
        lines = [line for line in out.splitlines() if line.startswith("token ")]
        if code == 0 and lines:
            return lines[0].removeprefix("token ")
        time.sleep(0.2)
    raise AssertionError(f"{name}'s server recorded no credential:\n{hub.log_tail()}")


def service_tokens(hub: Hub) -> list[list[str]]:
    """Scopes of each token the delivery service holds right now (from the hub database)."""
    with sqlite3.connect(hub.workdir / "jupyterhub.sqlite") as db:
        rows = db.execute(
            "SELECT t.scopes FROM api_tokens t JOIN services s ON t.service_id = s.id "
            "WHERE s.name = ?",
            (SERVICE,),
        ).fetchall()
    return sorted(json.loads(scopes) for (scopes,) in rows)


def replay(hub: Hub, token: str, owner: str) -> requests.Response:
    """Use a captured credential on ``owner``'s server, through the hub's proxy."""
    return requests.get(
        f"{hub.url}/user/{owner}/api/contents",
        headers={"Authorization": f"token {token}"},
        allow_redirects=False,
        timeout=60,
    )


def broadcast_and_replay(hub: Hub, sender_token: str, attacker: str, victim: str) -> None:
    """The attack: a broadcast reaches the attacker's spying server and the victim's;
    while the broadcast is still running (credentials live) and after it, the
    attacker replays what her server received against the victim's server."""
    code, out = run_in(hub.container(victim), "echo private > ~/secret-of-victim.txt", user=JOVYAN)
    assert code == 0, out
    with ThreadPoolExecutor(1) as pool:
        sent = pool.submit(
            requests.post,
            f"{hub.url}/hub/api/notifications/broadcast",
            headers={"Authorization": f"token {sender_token}"},
            json={"message": "Maintenance at 18:00", "recipients": [attacker, victim]},
            timeout=120,
        )
        try:
            token = captured_token(hub, attacker)
            # the capture is real and live: it opens the attacker's own server
            own = replay(hub, token, attacker)
            during = replay(hub, token, victim)
            minted = service_tokens(hub)
        finally:
            run_in(hub.container(attacker), "touch ~/release", user=JOVYAN)
        r = sent.result()
    assert own.status_code == 200, (own.status_code, own.text[:300])
    # ... and nothing else, while the broadcast runs or after it
    after = replay(hub, token, victim)
    for answer in (during, after):
        assert answer.status_code in (401, 403, 302), (answer.status_code, answer.text[:300])
        assert "secret-of-victim" not in answer.text
    # one credential per target, each good for that one server only
    assert minted == sorted(
        [[f"access:servers!server={attacker}/"], [f"access:servers!server={victim}/"]]
    )
    assert r.status_code == 200, r.text
    assert (r.json()["total"], r.json()["successful"]) == (2, 2), r.json()
    # the victim got the message, and every minted credential is gone
    assert [n["message"] for n in drain(hub, victim, hub.token_for(victim))] == [
        "Maintenance at 18:00"
    ]
    assert service_tokens(hub) == []


def test_boundary_user_user_broadcast_token_replay(make_hub):
    """A plain user who controls her server gets no key to another user's server."""
    hub = make_hub("c.NotificationsConfig.timeout = 60\n")
    hub.create_user("admin")
    spawn_all(hub, ["alice", "bob"])
    plant_spy(hub, "alice")
    broadcast_and_replay(hub, hub.token_for("admin"), attacker="alice", victim="bob")


def test_boundary_delegate_admin_broadcast_self_target(make_hub):
    """A delegated broadcaster who targets her own server gets no access to the others'."""
    hub = make_hub("c.NotificationsConfig.timeout = 60\n")
    spawn_all(hub, ["bro", "bob"])
    r = hub.api("POST", "/groups/jupyterhub-ext-broadcasters")
    assert r.status_code in (201, 409), r.text
    r = hub.api("POST", "/groups/jupyterhub-ext-broadcasters/users", json={"users": ["bro"]})
    assert r.status_code == 200, r.text
    bro = hub.token_for("bro")
    # she holds the broadcast scope, and no access to bob's server of her own
    assert replay(hub, bro, "bob").status_code in (401, 403, 302)
    plant_spy(hub, "bro")
    broadcast_and_replay(hub, bro, attacker="bro", victim="bob")
