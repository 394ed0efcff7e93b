"""Trust boundary user <-> user (data): whose volume or container it is, on a real engine.

Each test acts as the attacker would: a user whose name, or a name template,
maps onto someone else's Docker objects; a stranger signing up under a
deleted user's name; a user sending server options the admin never meant to
offer. Before the ownership rule (ownership.py) each of these got another
user's data or the host.
"""

from __future__ import annotations

import docker
import pytest
import requests

from hubctl import run_in, wait_for

pytestmark = pytest.mark.docker

SECRET = "alice-secret-8c1f"


def read_file(image: str, volume: str, path: str) -> str:
    """A file of a volume, read by a root helper container that cannot create the volume."""
    client = docker.from_env(version="auto")
    client.volumes.get(volume)
    out = client.containers.run(
        image,
        ["cat", f"/v/{path}"],
        volumes={volume: {"bind": "/v", "mode": "ro"}},
        remove=True,
        network_mode="none",
        user="0:0",
        entrypoint=[],
    )
    return out.decode().strip()


def spawn_refused(hub, name: str, options: dict | None = None) -> str:
    """POST a spawn that must fail; the text the user sees (API answer or spawn page message)."""
    hub.create_user(name)
    r = hub.api("POST", f"/users/{name}/server", json=options or {})
    text = r.text
    if r.status_code in (201, 202):
        # still pending when the POST returned: wait for the failure
        wait_for(lambda: not hub.user(name).get("pending"), timeout=90, what=f"{name}'s spawn ends")
        assert not hub.user(name)["servers"].get("", {}).get("ready"), "the spawn went ahead"
        text = hub.log_text()
    assert hub.container(name) is None, f"{name} got a container"
    return text


def test_boundary_user_user_crafted_name_refused_everywhere(make_hub):
    hub = make_hub()
    # "lab" + form feed + "ache" escapes to lab-cache: refused at every API entrance
    r = hub.api("POST", "/users/lab%0Cache")
    assert r.status_code == 400, r.text
    assert "lab" in r.json()["message"]
    r = hub.api("POST", "/users", json={"usernames": ["lab\u2028x", "ok-name"]})
    assert r.status_code == 400, r.text
    hub.create_user("plain")
    r = hub.api("PATCH", "/users/plain", json={"name": "pl\x0bain"})
    assert r.status_code == 400, r.text
    assert hub.user("plain")["name"] == "plain"
    names = {u["name"] for u in hub.api("GET", "/users").json()}
    assert not any(not n.isprintable() for n in names), names


def test_boundary_user_user_colliding_template_never_mounts(make_hub, run_prefix):
    # Two entries whose templates overlap across users: lab's cache volume is
    # named exactly like labcache's home. The second spawn must be refused.
    p = f"{run_prefix}-col"
    hub = make_hub(
        f"""
c.ExtDockerSpawner.volume_set = {{
    "home": {{"name": "{p}-h{{username}}", "mount": "/home/jovyan"}},
    "cache": {{"name": "{p}-h{{username}}cache", "mount": "/srv/cache"}},
}}
"""
    )
    hub.spawn("lab")
    code, out = run_in(hub.container("lab"), f"echo {SECRET} > /srv/cache/s", user="root")
    assert code == 0, out
    text = spawn_refused(hub, "labcache")
    assert f"{p}-hlabcache" in text and "belongs to another user" in text, text[-2000:]
    # labcache's volume list shows nothing of lab's volume, and its reset refuses it
    token = hub.token_for("labcache")
    auth = {"Authorization": f"token {token}"}
    url = f"{hub.url}/hub/api/users/labcache/manage-volumes"
    listed = {v["key"]: v for v in requests.get(url, headers=auth, timeout=30).json()["volumes"]}
    assert listed["home"]["size"] is None and "another user" in listed["home"]["problem"]
    r = requests.delete(url, headers=auth, json={"volumes": ["home"]}, timeout=60)
    assert r.status_code >= 400 or not r.json()["volumes"][0]["ok"], r.text
    hub.stop_server("lab")
    assert read_file(hub.image, f"{p}-hlabcache", "s") == SECRET


def test_boundary_user_user_deleted_users_name_gets_no_data(make_hub, docker_client):
    hub = make_hub()
    hub.spawn("carol")
    code, out = run_in(hub.container("carol"), f"echo {SECRET} > ~/secret")
    assert code == 0, out
    old_id = hub.user("carol")
    hub.stop_server("carol")
    assert hub.api("DELETE", "/users/carol").status_code == 204  # volumes kept (default)
    # a stranger signs up (here: is created) under the free name; the database
    # may even hand out the same id again
    new = hub.create_user("carol")
    home = f"{hub.prefix}-carol-home"
    text = spawn_refused(hub, "carol")
    assert home in text, text[-2000:]
    assert ("earlier user with the same id" in text) or ("another user" in text), text[-2000:]
    # the old data is intact and was never mounted
    assert read_file(hub.image, home, "secret") == SECRET
    assert new["name"] == "carol" and old_id["name"] == "carol"


def test_boundary_user_user_foreign_container_not_reused_or_removed(make_hub, docker_client):
    hub = make_hub()
    hub.spawn("erin")
    erin = hub.container("erin")
    erin.reload()
    # a container carrying erin's owner labels, under the name dave's server would get
    name = erin.name.replace("erin", "dave")
    decoy = docker_client.containers.create(
        hub.image, ["sleep", "600"], name=name, labels=erin.labels, entrypoint=[]
    )
    try:
        text = spawn_refused(hub, "dave")
        assert name in text and "belongs to another user" in text, text[-2000:]
        decoy.reload()  # DockerSpawner (remove=True) would have removed it
        assert decoy.status == "created"
    finally:
        decoy.remove(force=True)


CARELESS_OPTIONS = """
# a careless admin hook: copies every option onto the spawner
def apply_user_options(spawner, options):
    for key, value in options.items():
        setattr(spawner, key, value)

c.Spawner.apply_user_options = apply_user_options
c.ExtDockerSpawner.user_options_traits = ["mem_limit"]
"""


def test_boundary_user_host_user_options_allow_list(make_hub):
    hub = make_hub(CARELESS_OPTIONS)
    hub.create_user("mallory")
    for options, trait in (
        ({"extra_host_config": {"cap_add": ["SYS_ADMIN"]}}, "extra_host_config"),
        ({"extra_host_config": {"devices": ["/dev/kmsg:/dev/kmsg"]}}, "extra_host_config"),
        ({"extra_host_config": {"pid_mode": "host"}}, "extra_host_config"),
        ({"volumes": {"/": "/host"}}, "volumes"),
        ({"volume_set": {"home": {"name": "x-{username}", "mount": "/run"}}}, "volume_set"),
        ({"extra_create_kwargs": {"host_config": {"Privileged": True}}}, "extra_create_kwargs"),
        ({"image": "debian:latest"}, "image"),
    ):
        r = hub.api("POST", "/users/mallory/server", json=options)
        assert r.status_code == 403, (options, r.status_code, r.text)
        assert f"may not set {trait}" in r.json()["message"], r.text
        assert hub.container("mallory") is None
    # what the admin declared user-settable still works
    hub.spawn("mallory", options={"mem_limit": "400M"})
    c = hub.container("mallory")
    c.reload()
    assert c.attrs["HostConfig"]["Memory"] == 400 * 1024 * 1024
    assert c.attrs["HostConfig"]["CapAdd"] in (None, [])


def test_boundary_stranger_signup_crafted_name_refused(make_hub):
    hub = make_hub(start=False, authenticator="native")
    hub.config_file.write_text(
        hub.config_file.read_text().replace("jupyterhub_ext.setup(c)", "")
        + "\nc.Authenticator.admin_users = set()\nc.NativeAuthenticator.open_signup = True\n"
        + "jupyterhub_ext.setup(c)\n"
    )
    hub.start()
    s = requests.Session()
    s.get(f"{hub.url}/hub/signup", timeout=30).raise_for_status()
    r = s.post(
        f"{hub.url}/hub/signup",
        data={
            "username": "lab\x0cache",
            "signup_password": "a-long-passphrase-9",
            "signup_password_confirmation": "a-long-passphrase-9",
            "_xsrf": s.cookies.get("_xsrf"),
        },
        timeout=30,
    )
    assert r.status_code == 400, r.text[:500]
    assert "printable characters" in r.text
    assert hub.api("GET", "/users/lab%0Cache").status_code == 404
