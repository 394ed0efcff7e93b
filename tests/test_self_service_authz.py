"""Who may call the self-service routes: every route x every kind of caller, on a real hub."""

from __future__ import annotations

import pytest
import requests

from jupyterhub_ext.scopes import MANAGE_VOLUMES

pytestmark = pytest.mark.docker

ROUTES = [
    # (method, path, json body, scope it needs, answer when allowed: none of alice's
    #  servers runs, so a restart is 400 "not running" - authorization passed)
    ("POST", "/users/alice/restart-server", None, "servers", 400),
    ("POST", "/users/alice/servers/lab/restart-server", None, "servers", 400),
    ("GET", "/users/alice/manage-volumes", None, "volumes", 200),
    ("GET", "/users/alice/servers/lab/manage-volumes", None, "volumes", 200),
    ("DELETE", "/users/alice/manage-volumes", {"volumes": ["home"]}, "volumes", 200),
    ("DELETE", "/users/alice/servers/lab/manage-volumes", {"volumes": ["home"]}, "volumes", 200),
]

# A cross-site fetch from a browser: JupyterHub skips the XSRF check only for
# plain navigations (no Sec-Fetch-Mode), so say what a browser would say.
BROWSER_CROSS_SITE = {"Sec-Fetch-Mode": "cors", "Sec-Fetch-Site": "cross-site"}


def test_authorization_matrix(make_hub, docker_client):
    # the volume made by hand below carries no owner labels: let alice's reset
    # take it (ownership itself is tested in test_boundary_ownership_docker.py)
    hub = make_hub(
        "c.JupyterHub.allow_named_servers = True\nc.ExtDockerSpawner.adopt_unlabelled = True\n"
    )
    p = hub.prefix
    for name in ("alice", "bob", "admin"):
        hub.create_user(name)
    hub.api("PUT", "/users/alice/servers/lab").raise_for_status()  # created, not started

    tokens = {
        "self token": hub.token_for("alice"),
        "other user": hub.token_for("bob"),
        "admin": hub.token_for("admin"),
        # an admin's tokens limited to the *other* route family's scope
        "admin token without servers": hub.token_for("admin", scopes=[MANAGE_VOLUMES]),
        "admin token without manage-volumes": hub.token_for(
            "admin", scopes=["servers", "read:users"]
        ),
        "self token without the scope": hub.token_for("alice", scopes=["read:users!user"]),
    }
    cookie = hub.login("alice")
    xsrf = cookie.cookies.get("_xsrf")
    assert xsrf

    def call(who: str, method: str, path: str, body) -> requests.Response:
        url = f"{hub.url}/hub/api{path}"
        kw = {"json": body} if body is not None else {}
        if who == "no credentials":
            return requests.request(method, url, timeout=60, **kw)
        if who == "cookie + XSRF":
            return cookie.request(method, url, headers={"X-XSRFToken": xsrf}, timeout=60, **kw)
        if who == "cookie, missing XSRF":
            return cookie.request(method, url, headers=BROWSER_CROSS_SITE, timeout=60, **kw)
        if who == "admin token without the scope":
            family = "servers" if "restart" in path else "manage-volumes"
            who = f"admin token without {family}"
        tok = tokens[who]
        return requests.request(
            method, url, headers={"Authorization": f"token {tok}"}, timeout=60, **kw
        )

    refused = {
        "other user": 404,  # as JupyterHub's own filtered scopes: no hint the user exists
        "admin token without the scope": 403,
        "self token without the scope": 403,
        "no credentials": 403,
        "cookie, missing XSRF": 403,
    }
    allowed = ["self token", "cookie + XSRF", "admin"]

    # alice's home volume exists and must survive every refused request
    home = docker_client.volumes.create(f"{p}-alice-home")

    table = []
    for method, path, body, _scope, _ok_status in ROUTES:
        for who, want in refused.items():
            r = call(who, method, path, body)
            table.append((method, path, who, r.status_code))
            assert r.status_code == want, (method, path, who, r.status_code, r.text)
            assert r.headers["Content-Type"].startswith("application/json")
            assert r.json()["message"]
    home.reload()  # still there after every refusal

    for method, path, body, _scope, ok_status in ROUTES:
        for who in allowed:
            r = call(who, method, path, body)
            table.append((method, path, who, r.status_code))
            assert r.status_code == ok_status, (method, path, who, r.status_code, r.text)
            if ok_status == 400:
                assert "not running" in r.json()["message"]
    # the allowed DELETEs did remove it (the first one; later ones found it absent)
    assert not docker_client.volumes.list(filters={"name": f"{p}-alice-home"})

    print("\n".join(f"{m:6} {path:45} {who:32} {code}" for m, path, who, code in table))

    # refusals are audited with who asked and on whom
    lines = [x for x in hub.log_text().splitlines() if "jupyterhub_ext.audit" in x]
    assert any(
        'actor="bob" action="reset-volumes" target="alice" result="refused"' in x for x in lines
    )
    assert any(
        'actor="admin" action="reset-volumes" target="alice" result="ok"' in x for x in lines
    )
