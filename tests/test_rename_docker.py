"""Admin rename against a real engine, a real hub and NativeAuthenticator."""

from __future__ import annotations

import json

import docker
import pytest

from hubctl import (
    can_login,
    launch_chromium,
    run_in,
    signup,
    volume_manifest,
    volume_names,
    wait_for,
)

pytestmark = pytest.mark.docker

PASSWORD = "correct-horse-battery"

NATIVE = """
c.NativeAuthenticator.open_signup = True
c.DockerSpawner.remove = {remove}
c.ExtDockerSpawner.volume_set = {{
    "home": {{"name": "{p}-{{username}}-home", "mount": "/home/jovyan",
              "description": "Your home directory"}},
    "workspace": {{"name": "{p}-{{username}}-work", "mount": "/srv/work",
                   "description": "Project workspace"}},
}}
"""

# Files of every kind the rename must carry: a 200 MB file, a symlink, a file
# of another uid with mode 600, hard links, an old timestamp; home and workspace.
POPULATE = r"""
set -e
cd /home/jovyan
head -c 200000000 /dev/urandom > big.bin
echo 'hello from the old name' > note.txt
touch -d '2001-02-03 04:05:06' note.txt
ln -s note.txt note-link
mkdir -p nb && echo '{"cells": []}' > nb/a.ipynb && ln nb/a.ipynb nb/a-hardlink.ipynb
echo secret > other-owner.txt && chown 4242:4343 other-owner.txt && chmod 600 other-owner.txt
chown -R 1000:100 nb note.txt big.bin && chown -h 1000:100 note-link
mkdir -p /srv/work/proj
echo readme > /srv/work/proj/README
ln /srv/work/proj/README /srv/work/proj/README.hard
ln -s proj/README /srv/work/latest
install -o 4242 -g 4242 -m 600 /dev/null /srv/work/proj/private
chmod 2770 /srv/work/proj
"""


def native_hub(make_hub, *, remove: bool = True, extra: str = "", start: bool = True):
    hub = make_hub(start=False, authenticator="native")
    hub.config_file.write_text(
        hub.config_file.read_text().replace("jupyterhub_ext.setup(c)", "")
        + NATIVE.format(p=hub.prefix, remove=remove)
        + extra
        + "\njupyterhub_ext.setup(c)\n"
    )
    return hub.start() if start else hub


def wait_job(hub, name: str, job_id: str, states=("done", "rolled_back"), timeout=600):
    seen = []

    def check():
        r = hub.api("GET", f"/users/{name}/rename", params={"id": job_id})
        if r.status_code != 200:
            return None
        job = r.json()
        seen.append(job)
        return job if job["state"] in states else None

    job = wait_for(check, timeout=timeout, interval=0.3, what=f"rename job {job_id} in {states}")
    return job, seen


def test_rename_carries_login_and_every_file(make_hub, docker_client, lab_image):
    hub = native_hub(make_hub, remove=False)
    p = hub.prefix
    signup(hub, "alice", PASSWORD)
    assert can_login(hub, "alice", PASSWORD)  # creates the hub user
    uid = hub.user("alice")["id"] if "id" in hub.user("alice") else None

    hub.spawn("alice")
    code, out = run_in(hub.container("alice"), POPULATE, user="root")
    assert code == 0, out
    hub.stop_server("alice")
    old_container = hub.container("alice")
    assert old_container is not None  # remove=False: the stopped container stays
    before = {
        "home": volume_manifest(lab_image, f"{p}-alice-home"),
        "work": volume_manifest(lab_image, f"{p}-alice-work"),
    }
    assert before["home"]["big.bin"]["size"] == 200_000_000
    assert before["home"]["other-owner.txt"]["uid"] == 4242

    r = hub.api("PATCH", "/users/alice/rename", json={"new_name": "alicia"})
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["state"] == "copying" and job["old_name"] == "alice"
    assert r.headers["Location"].endswith(f"/hub/api/users/alicia/rename?id={job['id']}")
    assert {m["old"] for m in job["plan"]["moves"]} == {f"{p}-alice-home", f"{p}-alice-work"}

    job, seen = wait_job(hub, "alicia", job["id"])
    assert job["state"] == "done", job
    assert job["error"] is None
    # progress was reported while the big volume was copied
    home_progress = [
        s["progress"]["moves"].get(f"{p}-alice-home", {})
        for s in seen
        if s["progress"].get("moves")
    ]
    assert any((m.get("total") or 0) >= 200_000_000 for m in home_progress), seen[-1]
    assert any(0 < (m.get("copied") or 0) for m in home_progress)
    assert {m["state"] for m in job["plan"]["moves"]} == {"removed"}

    # the login moved: the old password works under the new name, the old name is gone
    assert hub.api("GET", "/users/alice").status_code == 404
    assert hub.user("alicia")["name"] == "alicia"
    assert can_login(hub, "alicia", PASSWORD)
    assert not can_login(hub, "alice", PASSWORD)
    assert hub.api("GET", "/users/alice").status_code == 404  # no new empty account

    # the data moved: same checksums, owners, modes, times, links; old volumes gone
    vols = volume_names(p)
    assert f"{p}-alice-home" not in vols and f"{p}-alice-work" not in vols
    after = {
        "home": volume_manifest(lab_image, f"{p}-alicia-home"),
        "work": volume_manifest(lab_image, f"{p}-alicia-work"),
    }
    assert after == before
    assert after["home"]["other-owner.txt"]["mode"] == 0o600
    assert after["home"]["note-link"]["target"] == "note.txt"
    assert after["home"]["nb/a-hardlink.ipynb"]["link_group"] == "nb/a-hardlink.ipynb"
    assert after["home"]["nb/a.ipynb"]["link_group"] == "nb/a-hardlink.ipynb"
    assert after["work"]["proj/README.hard"]["link_group"] == "proj/README"
    labels = docker_client.volumes.get(f"{p}-alicia-home").attrs["Labels"]
    assert labels["jupyterhub-ext.owner-name"] == "alicia"
    assert labels["jupyterhub-ext.volume-key"] == "home"
    if uid is not None:
        assert labels["jupyterhub-ext.owner-id"] == str(uid)

    # the old stopped container is gone; the next spawn makes one under the new name
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(old_container.id)
    hub.spawn("alicia")
    c = hub.container("alicia")
    assert "alicia" in c.name and "alice-" not in c.name
    c.reload()
    mounts = {m["Destination"]: m["Name"] for m in c.attrs["Mounts"]}
    assert mounts == {"/home/jovyan": f"{p}-alicia-home", "/srv/work": f"{p}-alicia-work"}
    code, out = run_in(c, "cat ~/note.txt && stat -c '%u %a' ~/other-owner.txt")
    assert (code, out.split()) == (0, ["hello", "from", "the", "old", "name", "4242", "600"])
    hub.stop_server("alicia")

    log = hub.log_text()
    # a service acts under its kind, as in every other audit line
    assert 'AUDIT actor="service:test-admin" action="rename-user" target="alice" result="ok"' in log
    assert '"new_name"' not in log or 'new_name="alicia"' in log


def test_refusals_change_nothing(make_hub, docker_client, lab_image):
    hub = native_hub(make_hub, extra='c.JupyterHub.tornado_settings = {"slow_spawn_timeout": 0}')
    p = hub.prefix
    for name in ("bob", "carol"):
        signup(hub, name, PASSWORD)
        assert can_login(hub, name, PASSWORD)
    # a sign-up without a hub user yet: the name is taken in NativeAuthenticator
    signup(hub, "pending", PASSWORD)
    # a pending, then a running server
    r = hub.api("POST", "/users/bob/server")
    assert r.status_code == 202, r.text  # slow_spawn_timeout=0: answered while pending
    assert hub.user("bob")["pending"] == "spawn"
    r = hub.api("PATCH", "/users/bob/rename", json={"new_name": "robert"})
    assert r.status_code == 409 and "running or pending" in r.json()["message"], r.text
    hub.wait_ready("bob")
    run_in(hub.container("bob"), "echo keep > ~/keep.txt")
    r = hub.api("PATCH", "/users/bob/rename", json={"new_name": "robert"})
    assert r.status_code == 409 and "Stop bob's server" in r.json()["message"], r.text
    hub.stop_server("bob")
    # a stray volume under a would-be new name
    docker_client.volumes.create(f"{p}-stray-home")
    manifest = volume_manifest(lab_image, f"{p}-bob-home")
    vols = volume_names(p)

    def rename(name, body):
        return hub.api("PATCH", f"/users/{name}/rename", json=body)

    cases = [
        ("nobody", {"new_name": "x"}, 404, "No user named nobody"),
        ("bob", {"new_name": "bad name"}, 400, "not a valid user name"),
        ("bob", {"new_name": "a/b"}, 400, "not a valid user name"),
        ("bob", {"new_name": ""}, 400, "new_name"),
        ("bob", {"new_name": 7}, 400, "new_name"),
        ("bob", {"new_name": "bob"}, 400, "already called"),
        ("bob", {"nickname": "z"}, 400, "Unknown field"),
        ("bob", {"new_name": "carol"}, 409, "already exists"),
        ("bob", {"name": "pending"}, 409, "sign-up for pending"),
        ("bob", {"new_name": "stray"}, 409, f"a volume named {p}-stray-home already exists"),
    ]
    for name, body, status, message in cases:
        r = rename(name, body)
        assert r.status_code == status, (body, r.text)
        assert message in r.json()["message"], (body, r.json())

    # a user's own token has no admin:users
    token = hub.token_for("carol")
    r = hub.session.__class__().patch(
        f"{hub.url}/hub/api/users/carol/rename",
        json={"new_name": "caroline"},
        headers={"Authorization": f"token {token}"},
        timeout=30,
    )
    assert r.status_code == 403
    # nor can a non-admin open the rename page
    s = hub.login("carol", PASSWORD)
    assert s.get(f"{hub.url}/hub/rename", timeout=30).status_code == 403

    # nothing changed
    assert hub.user("bob")["name"] == "bob"
    assert can_login(hub, "bob", PASSWORD) and can_login(hub, "carol", PASSWORD)
    assert not can_login(hub, "robert", PASSWORD)
    assert volume_names(p) == vols
    assert volume_manifest(lab_image, f"{p}-bob-home") == manifest
    assert hub.api("GET", "/users/bob/rename").status_code == 404  # no job recorded
    assert 'result="refused"' in hub.log_text()


CRASH = """
import os
os.environ["JUPYTERHUB_EXT_RENAME_FAULTS"] = {faults!r}
"""


def test_rename_killed_then_rerun_completes(make_hub, docker_client, lab_image, tmp_path):
    faults = tmp_path / "faults"
    faults.write_text("")
    hub = native_hub(make_hub, extra=CRASH.format(faults=str(faults)))
    p = hub.prefix
    signup(hub, "dave", PASSWORD)
    assert can_login(hub, "dave", PASSWORD)
    hub.spawn("dave")
    code, out = run_in(
        hub.container("dave"),
        "head -c 30000000 /dev/urandom > ~/data.bin && ln ~/data.bin ~/data.hard"
        " && ln -s data.bin ~/data.link && mkdir -p ~/d && for i in $(seq 200);"
        " do echo $i > ~/d/f$i; done",
    )
    assert code == 0, out
    hub.stop_server("dave")
    before = volume_manifest(lab_image, f"{p}-dave-home")

    def helpers():
        return docker_client.containers.list(
            all=True, filters={"label": "jupyterhub-ext.helper=rename-copy"}
        )

    def helpers_of(job_id):
        return docker_client.containers.list(
            all=True, filters={"label": f"jupyterhub-ext.rename-job={job_id}"}
        )

    def unchanged():
        assert hub.user("dave")["name"] == "dave"
        assert hub.api("GET", "/users/david").status_code == 404
        assert volume_names(p) == {f"{p}-dave-home", f"{p}-dave-work"}
        assert volume_manifest(lab_image, f"{p}-dave-home") == before
        assert can_login(hub, "dave", PASSWORD)

    # 1. the copy container is killed after copying, before the check and the commit
    faults.write_text("hold-copy\n")
    r = hub.api("PATCH", "/users/dave/rename", json={"new_name": "david"})
    assert r.status_code == 202, r.text
    job1 = r.json()["id"]
    copier = wait_for(lambda: [c for c in helpers_of(job1) if c.status == "running"], 120)[0]
    wait_for(lambda: "held" in copier.logs().decode(), 120, what="copy finished and held")
    copier.kill()
    job, _ = wait_job(hub, "dave", job1)
    assert job["state"] == "rolled_back" and "exit 137" in job["error"]
    unchanged()
    assert not helpers_of(job1)

    # 2. the hub is killed while the copy runs; the copy container is killed too
    faults.write_text("crash-after-copy-start\n")
    r = hub.api("PATCH", "/users/dave/rename", json={"new_name": "david"})
    assert r.status_code == 202, r.text
    job2 = r.json()["id"]
    wait_for(lambda: hub.proc.poll() is not None, 120, what="hub to die")
    for c in helpers_of(job2):
        if c.status == "running":
            c.kill()
    assert f"{p}-david-home" in volume_names(p)  # a partial copy was left behind
    hub.stop()  # the proxy of the dead hub
    faults.write_text("")
    hub.start()
    # hub start rolls the interrupted rename back: the names never changed
    job, _ = wait_job(hub, "dave", job2, timeout=120)
    assert job["state"] == "rolled_back", job
    unchanged()
    assert not helpers_of(job2)

    # 3. the hub dies after the commit, before the old volumes are removed
    faults.write_text("crash-after-commit\n")
    r = hub.api("PATCH", "/users/dave/rename", json={"new_name": "david"})
    assert r.status_code == 202, r.text
    job3 = r.json()["id"]
    wait_for(lambda: hub.proc.poll() is not None, 300, what="hub to die")
    # both copies exist now; the names changed in the database
    assert {f"{p}-dave-home", f"{p}-david-home"} <= volume_names(p)
    hub.stop()
    faults.write_text("")
    hub.start()
    # re-running the same rename finishes it (202), unless hub start already
    # has (200, the same job)
    r = hub.api("PATCH", "/users/dave/rename", json={"new_name": "david"})
    assert r.status_code in (200, 202), r.text
    assert r.json()["id"] == job3
    job, _ = wait_job(hub, "david", job3)
    assert job["state"] == "done", job
    assert volume_names(p) == {f"{p}-david-home", f"{p}-david-work"}
    assert volume_manifest(lab_image, f"{p}-david-home") == before
    assert can_login(hub, "david", PASSWORD)
    assert not can_login(hub, "dave", PASSWORD)
    assert not helpers_of(job3)


def test_core_patch_keeps_login_and_data(make_hub, docker_client, lab_image):
    hub = native_hub(make_hub)
    p = hub.prefix
    signup(hub, "erin", PASSWORD)
    assert can_login(hub, "erin", PASSWORD)
    hub.spawn("erin")
    assert run_in(hub.container("erin"), "echo mine > ~/mine.txt")[0] == 0
    hub.stop_server("erin")
    before = volume_manifest(lab_image, f"{p}-erin-home")

    # 1. JupyterHub's own rename (what its admin page does), server stopped
    r = hub.api("PATCH", "/users/erin", json={"name": "erika"})
    assert r.status_code == 200, r.text
    assert can_login(hub, "erika", PASSWORD)
    assert not can_login(hub, "erin", PASSWORD)
    job = hub.api("GET", "/users/erika/rename").json()
    assert job["source"] == "core" and job["old_name"] == "erin"
    job, _ = wait_job(hub, "erika", job["id"], states=("done",), timeout=180)
    assert volume_names(p) == {f"{p}-erika-home", f"{p}-erika-work"}
    assert volume_manifest(lab_image, f"{p}-erika-home") == before

    # a NativeAuthenticator sign-up under the new name: refused, rolled back
    signup(hub, "pending", PASSWORD)
    r = hub.api("PATCH", "/users/erika", json={"name": "pending"})
    assert r.status_code == 409 and "sign-up for pending" in r.json()["message"], r.text
    assert hub.user("erika")["name"] == "erika"
    assert can_login(hub, "erika", PASSWORD)

    # the 6.1.1 bug: repeating the name must not set it to NULL
    r = hub.api("PATCH", "/users/erika", json={"name": "erika", "admin": False})
    assert r.status_code == 200, r.text
    assert hub.user("erika")["name"] == "erika"
    assert "Refusing to set the name of user" in hub.log_text()

    hub.spawn("erika")
    c = hub.container("erika")
    assert c.name == f"{p}-erika"
    code, out = run_in(c, "cat ~/mine.txt && echo second > ~/second.txt")
    assert (code, out.strip()) == (0, "mine")

    # 2. renamed by JupyterHub while the server runs: it keeps running where it
    # is; its data moves once it has stopped, before the next spawn
    r = hub.api("PATCH", "/users/erika", json={"name": "erika2"})
    assert r.status_code == 200, r.text
    job = hub.api("GET", "/users/erika2/rename").json()
    assert job["state"] == "committed"
    assert f"{p}-erika-home" in volume_names(p)  # still in use, not moved
    assert can_login(hub, "erika2", PASSWORD)
    hub.stop_server("erika2")
    server = hub.spawn("erika2")
    assert server["url"] == "/user/erika2/"
    c = hub.container("erika2")
    assert c.name == f"{p}-erika2"
    code, out = run_in(c, "cat ~/mine.txt ~/second.txt")
    assert (code, out.split()) == (0, ["mine", "second"])
    token = hub.token_for("erika2")
    r = hub.session.__class__().get(
        f"{hub.url}/user/erika2/api/status", headers={"Authorization": f"token {token}"}
    )
    assert r.status_code == 200, r.text
    hub.stop_server("erika2")
    assert volume_names(p) == {f"{p}-erika2-home", f"{p}-erika2-work"}
    job = hub.api("GET", "/users/erika2/rename", params={"id": job["id"]}).json()
    assert job["state"] == "done", job
    log = hub.log_text()
    assert 'action="rename-user" target="erin" result="ok"' in log
    assert 'action="rename-user" target="erika" result="ok"' in log


def test_rename_page_in_browser(make_hub):
    from playwright.sync_api import sync_playwright

    hub = native_hub(make_hub)
    signup(hub, "admin", PASSWORD)
    hub.create_user("admin", admin=True)  # native test hubs name no admin in the config
    signup(hub, "frank", PASSWORD)
    assert can_login(hub, "frank", PASSWORD)
    hub.spawn("frank")
    hub.stop_server("frank")
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        page = browser.new_page()
        page.goto(f"{hub.url}/hub/login")
        page.fill("#username_input", "admin")
        page.fill("#password_input", PASSWORD)
        page.click("#login_submit")
        page.wait_for_url("**/hub/**")
        # the page is reachable from the nav bar, which keeps the other items of ours
        page.goto(f"{hub.url}/hub/home")
        page.click("#jhext-nav-rename")
        page.wait_for_url("**/hub/rename")
        assert page.locator("#jhext-nav-rename").count() == 1  # our nav items on our page too
        page.goto(f"{hub.url}/hub/rename?user=frank")
        assert page.locator("#jhext-rename-user").input_value() == "frank"
        # an invalid name is refused with the API's message, nothing renamed
        page.fill("#jhext-rename-new", "no way")
        page.click("#jhext-rename-submit")
        page.wait_for_selector("#jhext-rename-error:not(.d-none)")
        assert "not a valid user name" in page.inner_text("#jhext-rename-error")
        page.fill("#jhext-rename-new", "francis")
        page.click("#jhext-rename-submit")
        page.wait_for_selector("#jhext-rename-result.alert-success", timeout=180_000)
        text = page.inner_text("#jhext-rename-result")
        assert "frank is now francis" in text and "2 volume(s)" in text
        assert page.locator("#jhext-rename-volumes .progress").count() == 2
        bars = page.locator("#jhext-rename-volumes .progress")
        assert [bars.nth(i).get_attribute("aria-valuenow") for i in range(2)] == ["100", "100"]
        # the page's history lists it after a reload
        page.reload()
        row = page.locator("#jhext-rename-recent tbody tr").first.inner_text()
        assert "frank" in row and "francis" in row and "done" in row
        browser.close()
    assert hub.user("francis")["name"] == "francis"
    assert can_login(hub, "francis", PASSWORD)


NAMED = """
c.NativeAuthenticator.open_signup = True
c.JupyterHub.allow_named_servers = True
c.ExtDockerSpawner.volume_set = {{
    "home": {{"name": "{p}-{{username}}-home", "mount": "/home/jovyan"}},
    "scratch": {{"name": "{p}-{{username}}-{{servername}}-scratch", "mount": "/srv/scratch",
                 "description": "Per-server scratch space"}},
}}
"""


def test_rename_moves_named_server_volumes(make_hub, docker_client, lab_image):
    hub = make_hub(start=False, authenticator="native")
    p = hub.prefix
    hub.config_file.write_text(
        hub.config_file.read_text().replace("jupyterhub_ext.setup(c)", "")
        + NAMED.format(p=p)
        + "\njupyterhub_ext.setup(c)\n"
    )
    hub.start()
    signup(hub, "nora", PASSWORD)
    assert can_login(hub, "nora", PASSWORD)
    hub.spawn("nora", "lab")
    code, out = run_in(
        hub.container("nora", "lab"),
        "echo named > /srv/scratch/s.txt && echo home > /home/jovyan/h.txt",
        user="root",  # a new volume's mount point is root's
    )
    assert code == 0, out
    hub.stop_server("nora", "lab")
    assert {f"{p}-nora-home", f"{p}-nora-lab-scratch"} <= volume_names(p)

    r = hub.api("PATCH", "/users/nora/rename", json={"new_name": "nadia"})
    assert r.status_code == 202, r.text
    job, _ = wait_job(hub, "nadia", r.json()["id"])
    assert job["state"] == "done", job

    vols = volume_names(p)
    assert f"{p}-nora-lab-scratch" not in vols and f"{p}-nora-home" not in vols
    assert {f"{p}-nadia-lab-scratch", f"{p}-nadia-home"} <= vols
    labels = docker_client.volumes.get(f"{p}-nadia-lab-scratch").attrs["Labels"]
    assert labels["jupyterhub-ext.owner-name"] == "nadia"
    assert labels["jupyterhub-ext.server-name"] == "lab"

    hub.spawn("nadia", "lab")
    code, out = run_in(hub.container("nadia", "lab"), "cat /srv/scratch/s.txt ~/h.txt")
    assert (code, out.split()) == (0, ["named", "home"])


def test_rename_carries_adopted_unlabelled_volumes(make_hub, docker_client, lab_image):
    """Switched from DockerSpawner with adopt_unlabelled: its volumes rename like ours.

    They carry no owner labels (Docker cannot add labels later), so the rename
    must honour the same setting the spawn does; it used to read a setting
    name that does not exist and refused them as "without owner labels".
    """
    hub = native_hub(make_hub, extra="c.ExtDockerSpawner.adopt_unlabelled = True\n")
    p = hub.prefix
    old = f"{p}-carol-home"
    docker_client.volumes.create(old)  # as plain DockerSpawner made it: no labels
    docker_client.containers.run(
        lab_image,
        entrypoint=["/bin/sh", "-c"],
        command=["echo from-dockerspawner > /v/kept.txt && chown -R 1000:100 /v"],
        user="0:0",
        network_mode="none",
        volumes={old: {"bind": "/v"}},
        remove=True,
    )
    signup(hub, "carol", PASSWORD)
    assert can_login(hub, "carol", PASSWORD)
    hub.spawn("carol")  # adopted at spawn
    hub.stop_server("carol")

    r = hub.api("PATCH", "/users/carol/rename", json={"new_name": "carla"})
    assert r.status_code == 202, r.text
    job, _ = wait_job(hub, "carla", r.json()["id"])
    assert job["state"] == "done", job
    assert old not in volume_names(p)
    manifest = volume_manifest(lab_image, f"{p}-carla-home")
    assert "kept.txt" in json.dumps(manifest)
    assert can_login(hub, "carla", PASSWORD)
