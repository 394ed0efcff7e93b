"""A stranger at the sign-up form must not get a name the config trusts.

NativeAuthenticator approves a sign-up under an ``admin_users`` (or
``allowed_users``) name at once, and JupyterHub makes ``admin_users`` names
admins. The hub refuses to start while such a name has no account;
``jupyterhub-ext-create-account`` makes the account first. Real hubs
(tests/hubctl.py) and the real command; in-process hubs for the variants.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_recipes import init_hub

from hubctl import HubError, can_login, signup
from jupyterhub_ext.accounts import signup as accounts

ADMIN = "root-x"
ADMIN_PASSWORD = "admin-correct-horse-7"
STRANGER_PASSWORD = "stranger-battery-staple-3"
COMMAND = shutil.which(accounts.COMMAND, path=os.path.dirname(sys.executable))

NATIVE = """
c.NativeAuthenticator.open_signup = False  # sign-ups wait for approval...
c.Authenticator.admin_users = {{{admins}}}  # ...except these names
"""


def native_hub(make_hub, admins: str = f"{ADMIN!r}"):
    hub = make_hub(start=False, authenticator="native")
    text = hub.config_file.read_text().replace("jupyterhub_ext.setup(c)", "")
    hub.config_file.write_text(text + NATIVE.format(admins=admins) + "\njupyterhub_ext.setup(c)\n")
    return hub


def signup_page(hub, name: str, password: str) -> str:
    """What the sign-up form answers a stranger (hubctl.signup raises on refusal)."""
    try:
        return signup(hub, name, password)
    except HubError as e:
        # hubctl keeps only the page's start; ask again for the whole page
        import requests

        s = requests.Session()
        s.get(f"{hub.url}/hub/signup", timeout=30)
        data = {"username": name, "signup_password": password, "_xsrf": s.cookies.get("_xsrf")}
        data["signup_password_confirmation"] = password
        r = s.post(f"{hub.url}/hub/signup", data=data, timeout=30)
        assert r.status_code == 200, (e, r.status_code)
        return r.text


def create_account(hub, name: str, password: str, *extra: str) -> subprocess.CompletedProcess:
    """The documented command, run where the hub runs, with the hub's config."""
    assert COMMAND, f"{accounts.COMMAND} is not installed next to {sys.executable}"
    pw = hub.workdir / f"{name}.password"
    pw.write_text(password + "\n")
    pw.chmod(0o600)
    return subprocess.run(
        [COMMAND, "-f", str(hub.config_file), name, "--password-file", str(pw), *extra],
        cwd=hub.workdir,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_boundary_stranger_signup_admin_name_refused_start(make_hub):
    """Sign-up open, admin name without account: the hub does not start."""
    hub = native_hub(make_hub)
    try:
        hub.start()
    except HubError:
        pass
    else:
        # the old behaviour: the attacker signs up under the admin name, is
        # approved at once, logs in, and is a hub admin
        signup(hub, ADMIN, STRANGER_PASSWORD)
        hub.login(ADMIN, STRANGER_PASSWORD)
        pytest.fail(
            f"the hub started with {ADMIN!r} free; a stranger signed up under it "
            f"and is admin={hub.user(ADMIN)['admin']}"
        )
    assert hub.proc.returncode == 1
    log = hub.log_text()
    assert "Refusing to start" in log
    assert repr(ADMIN) in log and "c.Authenticator.admin_users" in log
    assert f"{accounts.COMMAND} -f {hub.config_file} {ADMIN} --password-file" in log
    # nothing was listening: no proxy left behind, no sign-up form served
    assert not (hub.workdir / "proxy.pid").exists()


def test_boundary_stranger_signup_admin_name_after_create_account(make_hub):
    """The way that works: the account first, then the hub; the name is not for grabs."""
    hub = native_hub(make_hub)
    out = create_account(hub, ADMIN, ADMIN_PASSWORD)
    assert out.returncode == 0, out.stderr
    assert f"admin account {ADMIN!r} created" in out.stdout
    assert ADMIN_PASSWORD not in out.stdout + out.stderr
    hub.start()

    # the stranger at the sign-up form
    assert "username is already in use" in signup_page(hub, ADMIN, STRANGER_PASSWORD)
    assert not can_login(hub, ADMIN, STRANGER_PASSWORD)
    # names are normalised: the upper-case spelling is the same account
    assert "username is already in use" in signup_page(hub, ADMIN.upper(), STRANGER_PASSWORD)
    assert not can_login(hub, ADMIN.upper(), STRANGER_PASSWORD)

    # the real admin logs in and is admin
    s = hub.login(ADMIN, ADMIN_PASSWORD)
    assert s.get(f"{hub.url}/hub/admin", timeout=30).status_code == 200
    assert hub.user(ADMIN)["admin"] is True
    assert ADMIN_PASSWORD not in hub.log_text()

    # a second run does not silently overwrite the account
    again = create_account(hub, ADMIN, "another-password-9")
    assert again.returncode == 2 and "already has an account" in again.stderr


def test_boundary_stranger_signup_deleted_admin_name_refused(make_hub):
    """An admin's account deleted while the hub runs: the name is not for grabs either."""
    hub = native_hub(make_hub)
    assert create_account(hub, ADMIN, ADMIN_PASSWORD).returncode == 0, "create account"
    hub.start()
    assert hub.api("DELETE", f"/users/{ADMIN}").status_code == 204
    assert not can_login(hub, ADMIN, ADMIN_PASSWORD)  # Native's row went with the user

    page = signup_page(hub, ADMIN, STRANGER_PASSWORD)
    assert "The signup was successful" not in page
    assert not can_login(hub, ADMIN, STRANGER_PASSWORD)
    assert hub.api("GET", f"/users/{ADMIN}").status_code == 404
    assert f"Sign-up refused for {ADMIN!r}" in hub.log_text()
    # other people still sign up (and wait for approval)
    assert "sent to the admin" in signup_page(hub, "newcomer", STRANGER_PASSWORD)


# -- in-process hubs: the variants -----------------------------------------------


def hub_config(extra: str) -> str:
    return f"""
        c = get_config()
        c.JupyterHub.spawner_class = "ext-docker"
        c.JupyterHub.authenticator_class = "native"
        c.Authenticator.allow_all = True
        {extra}
        import jupyterhub_ext
        jupyterhub_ext.setup(c)
    """


def write_config(tmp_path: Path, extra: str) -> Path:
    import textwrap

    config = tmp_path / "jupyterhub_config.py"
    body = textwrap.dedent(hub_config(extra))
    db = f"sqlite:///{tmp_path / 'jupyterhub.sqlite'}"
    config.write_text(body + f"c.JupyterHub.db_url = {db!r}\n")
    return config


def run_command(config: Path, name: str, password: str, *extra: str) -> tuple[int, str, str]:
    pw = config.parent / "pw"
    pw.write_text(password)
    out, err = io.StringIO(), io.StringIO()
    sys_out, sys_err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        rc = accounts.main(["-f", str(config), name, "--password-file", str(pw), *extra])
    finally:
        sys.stdout, sys.stderr = sys_out, sys_err
    return rc, out.getvalue(), err.getvalue()


async def test_boundary_stranger_signup_allowed_name_refused_start(tmp_path):
    """Names the config gives something (approval, a role, a group) need accounts too."""
    extra = (
        "c.Authenticator.allowed_users = {'carol'}; c.Authenticator.admin_users = {'Boss'}; "
        "c.JupyterHub.load_roles = [{'name': 'helpdesk', 'users': ['dana'], "
        "'scopes': ['servers']}]; "
        "c.JupyterHub.load_groups = {'docker-sock': {'users': ['eve']}}"
    )
    config = write_config(tmp_path, extra)
    with pytest.raises(accounts.AccountsMissing) as refused:
        await init_hub(tmp_path, config.read_text())
    assert refused.value.code == 1
    assert refused.value.names == ["boss", "carol", "dana", "eve"]
    assert "'carol' (c.Authenticator.allowed_users)" in str(refused.value)
    assert "'boss' (c.Authenticator.admin_users)" in str(refused.value)
    assert "'dana' (c.JupyterHub.load_roles (role 'helpdesk'))" in str(refused.value)
    assert "'eve' (c.JupyterHub.load_groups (group 'docker-sock'))" in str(refused.value)
    # every account made (admin name given as configured, stored normalised): it starts
    for name in ("Boss", "carol", "dana", "eve"):
        assert run_command(config, name, f"{name}-password-123")[0] == 0
    app, _ = await init_hub(tmp_path, config.read_text())
    from nativeauthenticator.orm import UserInfo

    assert UserInfo.find(app.db, "boss").is_authorized
    assert app.authenticator.admin_users == {"boss"}


async def test_boundary_stranger_signup_native_subclass_refused_start(tmp_path, monkeypatch):
    """An admin's own NativeAuthenticator subclass, named by its dotted path, is covered."""
    (tmp_path / "labauth_jhext.py").write_text(
        "from nativeauthenticator import NativeAuthenticator\n"
        "class LabNative(NativeAuthenticator):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    extra = (
        "c.JupyterHub.authenticator_class = 'labauth_jhext.LabNative'; "
        "c.Authenticator.admin_users = {'boss'}"
    )
    with pytest.raises(accounts.AccountsMissing, match="'boss'"):
        await init_hub(tmp_path, write_config(tmp_path, extra).read_text())
    assert accounts.uses_native("labauth_jhext.LabNative")
    assert not accounts.uses_native("dummy")
    assert not accounts.uses_native("no_such_module_jhext.Auth")


async def test_signup_closed_starts_without_accounts(tmp_path):
    """With sign-up off nobody can claim a name: no refusal."""
    extra = "c.NativeAuthenticator.enable_signup = False; c.Authenticator.admin_users = {'boss'}"
    app, _ = await init_hub(tmp_path, write_config(tmp_path, extra).read_text())
    assert app.authenticator.enable_signup is False


def test_create_account_refuses_bad_input(tmp_path, monkeypatch):
    config = write_config(tmp_path, "c.Authenticator.admin_users = {'boss'}")
    rc, _, err = run_command(config, "boss", "short")
    assert rc == 2 and "too weak" in err
    rc, _, err = run_command(config, "bad/name", "long-enough-password-1")
    assert rc == 2 and "not a valid user name" in err
    rc, _, err = run_command(tmp_path / "nope.py", "boss", "long-enough-password-1")
    assert rc == 2 and "no hub config" in err
    (tmp_path / "empty").write_text("\n")
    rc = accounts.main(["-f", str(config), "boss", "--password-file", str(tmp_path / "empty")])
    assert rc == 2

    # from stdin; then --replace sets a new password, the old one stops working
    monkeypatch.setattr(sys, "stdin", io.StringIO("first-password-123\n"))
    assert accounts.main(["-f", str(config), "boss", "--password-file", "-"]) == 0
    rc, out, _ = run_command(config, "boss", "second-password-123", "--replace")
    assert rc == 0 and "new password set" in out
    from jupyterhub import orm
    from nativeauthenticator.orm import UserInfo
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    with Session(create_engine(f"sqlite:///{tmp_path / 'jupyterhub.sqlite'}")) as db:
        info = UserInfo.find(db, "boss")
        assert info.is_valid_password("second-password-123")
        assert not info.is_valid_password("first-password-123")
        assert orm.User.find(db, "boss").admin is True


def test_create_account_refuses_other_authenticators(tmp_path):
    config = write_config(tmp_path, "c.JupyterHub.authenticator_class = 'dummy'")
    rc, _, err = run_command(config, "boss", "long-enough-password-1")
    assert rc == 2 and "not NativeAuthenticator" in err


def test_admin_users_from_env(monkeypatch):
    monkeypatch.delenv(accounts.ADMIN_ENV, raising=False)
    with pytest.raises(SystemExit, match="JUPYTERHUB_ADMIN_USERS is not set"):
        accounts.admin_users_from_env()
    monkeypatch.setenv(accounts.ADMIN_ENV, " jdoe, ,mx ")
    assert accounts.admin_users_from_env() == {"jdoe", "mx"}
