"""Trust boundaries of the admin rename, tried as an attacker would (real engine, real hub).

- a stranger at the sign-up form after a privileged user was renamed away
  from the name a setting grants to;
- two admins' renames racing for one new name, and a stranger signing up (or
  an API client creating a user) under a name while a rename holds it.
"""

from __future__ import annotations

import threading
import urllib.parse

import pytest
import requests
from test_admin_accounts import create_account
from test_rename_docker import PASSWORD, native_hub, wait_job

from hubctl import can_login, run_in, signup, volume_manifest, volume_names, wait_for

pytestmark = pytest.mark.docker

PRIVILEGED = """
c.NativeAuthenticator.open_signup = False
c.Authenticator.admin_users = {"admin", "boss"}
c.Authenticator.allowed_users = {"carl", "fay"}
c.JupyterHub.load_roles = [
    {"name": "admin", "services": ["test-admin"]},
    {"name": "dora-reader", "scopes": ["read:users!user=dora"], "users": ["carl"]},
]
"""


def signup_attempt(hub, name: str, password: str) -> requests.Response:
    """A stranger at NativeAuthenticator's form; returns the raw answer."""
    s = requests.Session()
    s.get(f"{hub.url}/hub/signup", timeout=30).raise_for_status()
    return s.post(
        f"{hub.url}/hub/signup",
        data={
            "username": name,
            "signup_password": password,
            "signup_password_confirmation": password,
            "_xsrf": s.cookies.get("_xsrf"),
        },
        timeout=30,
    )


def test_boundary_stranger_signup_cannot_inherit_privileged_name(make_hub):
    hub = native_hub(make_hub, extra=PRIVILEGED, start=False)
    p = hub.prefix
    # names a setting pre-authorizes get their accounts before sign-up opens
    # (the hub refuses to start otherwise: see test_admin_accounts.py)
    for name in ("admin", "boss", "carl", "fay"):
        out = create_account(hub, name, PASSWORD)
        assert out.returncode == 0, out.stderr
    hub.start()
    for name in ("boss", "carl", "fay"):
        assert can_login(hub, name, PASSWORD)
    hub.create_user("dora")  # named by a role's scope filter
    assert hub.user("boss")["admin"] is True

    # renaming away from a name a setting grants to: refused, naming the setting
    cases = [
        ("boss", "bigboss", "c.Authenticator.admin_users lists boss"),
        ("carl", "carlos", "c.Authenticator.allowed_users lists carl"),
        ("dora", "dorothy", "'dora-reader' has scope(s) read:users!user=dora"),
    ]
    for old, new, setting in cases:
        r = hub.api("PATCH", f"/users/{old}/rename", json={"new_name": new})
        assert r.status_code == 409, (old, r.text)
        assert setting in r.json()["message"], r.json()
        # JupyterHub's own rename (its admin page) obeys the same rule
        r = hub.api("PATCH", f"/users/{old}", json={"name": new})
        assert r.status_code == 409, (old, r.text)
        assert setting in r.json()["message"], r.json()
        assert hub.user(old)["name"] == old
        assert hub.api("GET", f"/users/{new}").status_code == 404

    # the stranger at the sign-up form gets none of those names
    for name in ("boss", "carl"):
        r = signup_attempt(hub, name, "stranger-password-1")
        assert "already in use" in r.text, r.text[:500]
        assert not can_login(hub, name, "stranger-password-1")
    assert can_login(hub, "boss", PASSWORD) and hub.user("boss")["admin"] is True

    # a user no setting names may be renamed; a stranger signing up under the
    # old name afterwards gains nothing: no approval, no login, no old data
    r = hub.api("PATCH", "/users/fay/rename", json={"new_name": "faye"})
    assert r.status_code == 409 and "allowed_users lists fay" in r.json()["message"]
    hub.create_user("gil")
    hub.spawn("gil")
    assert run_in(hub.container("gil"), "echo gil-private > ~/private.txt")[0] == 0
    hub.stop_server("gil")
    r = hub.api("PATCH", "/users/gil/rename", json={"new_name": "gilbert"})
    assert r.status_code == 202, r.text
    job, _ = wait_job(hub, "gilbert", r.json()["id"])
    assert job["state"] == "done", job
    r = signup_attempt(hub, "gil", "stranger-password-1")
    assert r.status_code == 200
    assert not can_login(hub, "gil", "stranger-password-1")  # waits for an admin
    assert hub.api("GET", "/users/gil").status_code == 404
    assert f"{p}-gil-home" not in volume_names(p)
    assert "refused" in hub.log_text()


RACE = """
c.NativeAuthenticator.open_signup = True
import os
os.environ["JUPYTERHUB_EXT_RENAME_FAULTS"] = {faults!r}
"""


def test_boundary_racing_renames_and_signup_under_reserved_name(
    make_hub, docker_client, lab_image, tmp_path
):
    faults = tmp_path / "faults"
    faults.write_text("")
    hub = native_hub(make_hub, extra=RACE.format(faults=str(faults)))
    p = hub.prefix
    new = "zoë"  # any printable name: the status URL must be escaped
    for name in ("ann", "bea"):
        signup(hub, name, PASSWORD)
        assert can_login(hub, name, PASSWORD)
        hub.spawn(name)
        assert run_in(hub.container(name), f"echo {name}-data > ~/mine.txt")[0] == 0
        hub.stop_server(name)
    before = {n: volume_manifest(lab_image, f"{p}-{n}-home") for n in ("ann", "bea")}

    # two admins rename two users to one new name at the same moment; the
    # copy is held open (fault injection) so the window stays open
    faults.write_text("hold-copy\n")
    answers: dict[str, requests.Response] = {}
    go = threading.Barrier(2)

    def rename(old: str) -> None:
        go.wait()
        answers[old] = hub.api("PATCH", f"/users/{old}/rename", json={"new_name": new})

    threads = [threading.Thread(target=rename, args=(n,)) for n in ("ann", "bea")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(r.status_code for r in answers.values())
    assert codes == [202, 409], {k: (r.status_code, r.text) for k, r in answers.items()}
    winner = next(n for n, r in answers.items() if r.status_code == 202)
    loser = "bea" if winner == "ann" else "ann"
    assert "reserved by the rename" in answers[loser].json()["message"]
    job = answers[winner].json()

    # the status URL names the new name escaped, and it works
    location = answers[winner].headers["Location"]
    escaped_new = urllib.parse.quote(new)
    assert location == f"/hub/api/users/{escaped_new}/rename?id={job['id']}", location
    status = hub.session.get(f"{hub.url}{location}", timeout=30)
    assert status.status_code == 200 and status.json()["id"] == job["id"]

    def held() -> bool:
        helpers = docker_client.containers.list(
            all=True, filters={"label": f"jupyterhub-ext.rename-job={job['id']}"}
        )
        return any("held" in c.logs().decode() for c in helpers)

    wait_for(held, 120, what="copy held")

    # while it copies, nobody can take the new name: the sign-up form ...
    r = signup_attempt(hub, new, "stranger-password-1")
    assert r.status_code == 409 and "reserved by the rename" in r.text, r.text[:500]
    assert not can_login(hub, new, "stranger-password-1")
    # ... the user API (both forms) ...
    r = hub.api("POST", f"/users/{escaped_new}")
    assert r.status_code == 409 and "reserved" in r.json()["message"], r.text
    r = hub.api("POST", "/users", json={"usernames": [new]})
    assert r.status_code == 409, r.text
    # ... nor JupyterHub's own rename of the other user
    r = hub.api("PATCH", f"/users/{loser}", json={"name": new})
    assert r.status_code == 409 and "reserved" in r.json()["message"], r.text
    assert hub.api("GET", f"/users/{escaped_new}").status_code == 404
    # the half-made copy is nobody's: it carries the job's label
    half = docker_client.volumes.get(f"{p}-zo-c3-ab-home").attrs["Labels"]
    assert half["jupyterhub-ext.rename-job"] == job["id"]

    # an admin cancels the rename: rolled back, nothing lost, name free again
    r = hub.api("DELETE", f"/users/{winner}/rename")
    assert r.status_code == 200, r.text
    done = r.json()
    assert done["state"] == "rolled_back" and "cancelled by service:test-admin" in done["error"]
    assert hub.api("DELETE", f"/users/{winner}/rename").status_code == 404
    assert not docker_client.containers.list(
        all=True, filters={"label": f"jupyterhub-ext.rename-job={job['id']}"}
    )
    assert volume_names(p) == {f"{p}-{n}-{k}" for n in ("ann", "bea") for k in ("home", "work")}
    for n in ("ann", "bea"):
        assert hub.user(n)["name"] == n and can_login(hub, n, PASSWORD)
        assert volume_manifest(lab_image, f"{p}-{n}-home") == before[n]

    # the loser's rename now goes through to the end
    faults.write_text("")
    r = hub.api("PATCH", f"/users/{loser}/rename", json={"new_name": new})
    assert r.status_code == 202, r.text
    job2, _ = wait_job(hub, escaped_new, r.json()["id"])
    assert job2["state"] == "done", job2
    assert volume_manifest(lab_image, f"{p}-zo-c3-ab-home") == before[loser]
    assert volume_manifest(lab_image, f"{p}-{winner}-home") == before[winner]
    assert 'action="cancel-rename"' in hub.log_text()
    # the journal keeps no volume driver options (Docker reports them resolved)
    import sqlite3

    with sqlite3.connect(hub.workdir / "jupyterhub.sqlite") as db:
        plans = [row[0] for row in db.execute("SELECT plan FROM jupyterhub_ext_rename_jobs")]
    assert plans and all('"moves"' in plan and '"options"' not in plan for plan in plans), plans


class _FakeDB:
    """The journal's session, for driving one copy step without a hub."""

    def commit(self) -> None:
        pass


def test_boundary_racing_volume_create_never_copies_into_anothers_volume(
    docker_client, lab_image, run_prefix
):
    """Docker's create returns a same-named volume made a moment earlier by someone else.

    The racer here creates the target between the rename's existence check
    and its create; the rename must notice (the label is not its job's) and
    copy nothing into that volume.
    """
    import asyncio

    from jupyterhub_ext.engine import dockerpool
    from jupyterhub_ext.rename import runner as rename
    from jupyterhub_ext.rename.journal import RenameJob

    src, dst = f"{run_prefix}-race-src", f"{run_prefix}-race-dst"
    owner = {"jupyterhub-ext.owner-id": "7", "jupyterhub-ext.owner-name": "ann"}
    docker_client.volumes.create(src, labels={"jupyterhub-ext.managed": "true", **owner})
    docker_client.containers.run(
        lab_image,
        entrypoint=["sh", "-c", "echo ann-private > /v/secret.txt"],
        user="0:0",
        network_mode="none",
        volumes={src: {"bind": "/v"}},
        remove=True,
    )
    real = dockerpool.client()

    class RacingAPI:
        def __getattr__(self, name):
            return getattr(real, name)

        def create_volume(self, name, **kwargs):
            if name == dst:  # the other side of the race wins by a hair
                real.create_volume(name=dst, labels={"jupyterhub-ext.rename-job": "other-job"})
            return real.create_volume(name=name, **kwargs)

    job = RenameJob(
        key="this-job",
        user_id=7,
        old_name="ann",
        new_name="zoe",
        source="api",
        state="copying",
        plan={
            "planned": True,
            "moves": [
                {"key": "home", "server": "", "old": src, "new": dst, "labels": owner}
                | {"driver": "local", "state": "planned"}
            ],
        },
    )
    ctx = rename._Ctx(_FakeDB(), RacingAPI(), lab_image, run_prefix)
    with pytest.raises(rename.RenameError, match="appeared while the rename was starting"):
        asyncio.run(rename._copy_one(ctx, job, 0))
    vol = docker_client.volumes.get(dst)
    assert vol.attrs["Labels"] == {"jupyterhub-ext.rename-job": "other-job"}
    assert volume_manifest(lab_image, dst).keys() == {"."}  # nothing of ann's in it
    assert "secret.txt" in volume_manifest(lab_image, src)
    vol.remove()
    docker_client.volumes.get(src).remove()


def test_boundary_big_renames_do_not_starve_spawns_and_listings(make_hub):
    """Two 1 GB homes copying with a 2-thread shared pool: the hub still answers in time."""
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    import rename_pool

    hub = make_hub(rename_pool.CONFIG)
    fig = rename_pool.measure(hub, size_mb=1024)
    print("rename_pool figures:", json.dumps(fig, indent=1))
    # the calls answered while the copies still ran: a starved pool makes
    # them wait until the copies end (seen before the fix: a 16 s spawn that
    # finished only after both copies had)
    assert fig["busy"]["copying_after_listing"] == 2, ("listing waited for the copies", fig)
    assert fig["busy"]["copying_after_spawn"] >= 1, ("spawn waited for the copies", fig)
    assert all(fig["bytes"][n] >= 1024 * 2**20 for n in ("r1x", "r2x")), fig
    for ok, what in rename_pool.verdicts(fig):
        print(("PASS: " if ok else "MISS: ") + what)
        assert ok, what


def test_rename_past_its_deadline_is_rolled_back(make_hub, lab_image, tmp_path):
    faults = tmp_path / "faults"
    faults.write_text("hold-copy\n")  # the copy never ends
    hub = native_hub(
        make_hub,
        extra=RACE.format(faults=str(faults)) + "c.ExtDockerSpawner.rename_timeout = 4\n",
    )
    p = hub.prefix
    signup(hub, "hal", PASSWORD)
    assert can_login(hub, "hal", PASSWORD)
    hub.spawn("hal")
    assert run_in(hub.container("hal"), "echo hal > ~/mine.txt")[0] == 0
    hub.stop_server("hal")
    before = volume_manifest(lab_image, f"{p}-hal-home")
    r = hub.api("PATCH", "/users/hal/rename", json={"new_name": "hank"})
    assert r.status_code == 202, r.text
    job, _ = wait_job(hub, "hal", r.json()["id"], timeout=120)
    assert job["state"] == "rolled_back", job
    assert "did not finish within 4 s" in job["error"]
    assert volume_names(p) == {f"{p}-hal-home", f"{p}-hal-work"}
    assert volume_manifest(lab_image, f"{p}-hal-home") == before
    assert can_login(hub, "hal", PASSWORD)


@pytest.mark.browser
def test_rename_page_cancel_in_browser(make_hub, lab_image, tmp_path):
    from playwright.sync_api import sync_playwright

    from hubctl import launch_chromium

    faults = tmp_path / "faults"
    faults.write_text("hold-copy\n")  # the copy stays open until cancelled
    hub = native_hub(make_hub, extra=RACE.format(faults=str(faults)))
    p = hub.prefix
    signup(hub, "admin", PASSWORD)
    hub.create_user("admin", admin=True)  # native test hubs name no admin in the config
    signup(hub, "ivy", PASSWORD)
    assert can_login(hub, "ivy", PASSWORD)
    hub.spawn("ivy")
    hub.stop_server("ivy")
    before = volume_manifest(lab_image, f"{p}-ivy-home")
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        page = browser.new_page()
        page.goto(f"{hub.url}/hub/login")
        page.fill("#username_input", "admin")
        page.fill("#password_input", PASSWORD)
        page.click("#login_submit")
        page.wait_for_url("**/hub/**")
        page.goto(f"{hub.url}/hub/rename?user=ivy")
        page.fill("#jhext-rename-new", "ivan")
        page.click("#jhext-rename-submit")
        page.wait_for_selector("#jhext-rename-cancel:not(.d-none)", timeout=60_000)
        page.click("#jhext-rename-cancel")
        page.wait_for_selector("#jhext-rename-result.alert-danger", timeout=60_000)
        text = page.inner_text("#jhext-rename-result")
        assert "Not renamed, nothing changed" in text and "cancelled by admin" in text, text
        assert page.locator("#jhext-rename-cancel.d-none").count() == 1
        browser.close()
    assert hub.user("ivy")["name"] == "ivy" and can_login(hub, "ivy", PASSWORD)
    # (the admin's login started her own server: her volumes are not counted)
    assert {v for v in volume_names(p) if "-admin-" not in v} == {
        f"{p}-ivy-home",
        f"{p}-ivy-work",
    }
    assert volume_manifest(lab_image, f"{p}-ivy-home") == before


def test_boundary_rename_into_a_privileged_name_is_refused(make_hub):
    """Grants by name (admin_users, load_groups, ...) must not pass to a renamed user:
    a delegated admin:users role could otherwise make someone admin by renaming them."""
    hub = make_hub('c.JupyterHub.load_groups = {"docker-sock": {"users": ["builder"]}}')
    hub.create_user("mallory")
    # the hub made these users at start; deleted since, their names still carry the grants
    for name in ("admin", "builder"):
        assert hub.api("DELETE", f"/users/{name}").status_code == 204
    for target, why in [
        ("admin", "c.Authenticator.admin_users lists admin"),
        ("builder", "the group 'docker-sock' in c.JupyterHub.load_groups lists builder"),
    ]:
        r = hub.api("PATCH", "/users/mallory/rename", json={"new_name": target})
        assert r.status_code == 409, r.text
        assert why in r.json()["message"] and "Grant it explicitly" in r.json()["message"]
        # JupyterHub's own rename (its admin page's Edit User) obeys the same rule
        r = hub.api("PATCH", "/users/mallory", json={"name": target})
        assert r.status_code == 409, r.text
        assert why in r.json()["message"] and "Grant it explicitly" in r.json()["message"]
        assert hub.user("mallory")["name"] == "mallory"
    assert hub.user("mallory")["admin"] is False
    assert hub.api("GET", "/users/admin").status_code == 404
    assert 'action="rename-user" target="mallory" result="refused"' in hub.log_text()
