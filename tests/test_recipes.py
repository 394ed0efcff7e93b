"""Every config fragment the docs show is loaded into a real JupyterHub application.

The login recipes (docs/recipes/*.py), the production config
(deploy/jupyterhub_config.py) and the operations snippets are included into
the pages with ``literalinclude``; here each is loaded the way an admin loads
it (``load_subconfig`` above ``jupyterhub_ext.setup(c)``) and the hub is
initialised (database, authenticator, roles, services, handlers) without
starting the proxy. So a page cannot show a fragment that does not load.
"""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import pytest
from jupyterhub.app import JupyterHub

import jupyterhub_ext
from jupyterhub_ext.spawner import ExtDockerSpawner

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "docs" / "recipes"

# The environment each recipe documents (fake values; nothing is contacted).
RECIPE_ENV = {
    "JUPYTERHUB_ADMIN_USERS": "jdoe,boss",
    "OAUTH_CALLBACK_URL": "https://hub.example.org/hub/oauth_callback",
    "OAUTH_CLIENT_ID": "client-id",
    "OAUTH_CLIENT_SECRET": "client-secret",
    "GITHUB_CLIENT_ID": "gh-client-id",
    "GITHUB_CLIENT_SECRET": "gh-client-secret",
    "JUPYTERHUB_GITHUB_ORGS": "my-lab,my-lab:admins",
    "GITLAB_URL": "https://gitlab.example.org",
    "GITLAB_CLIENT_ID": "gl-client-id",
    "GITLAB_CLIENT_SECRET": "gl-client-secret",
    "JUPYTERHUB_GITLAB_GROUPS": "lab,lab/students",
    "OAUTH2_AUTHORIZE_URL": "https://sso.example.org/realms/lab/protocol/openid-connect/auth",
    "OAUTH2_TOKEN_URL": "https://sso.example.org/realms/lab/protocol/openid-connect/token",
    "OAUTH2_USERDATA_URL": "https://sso.example.org/realms/lab/protocol/openid-connect/userinfo",
}


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def text(self, level: int = logging.WARNING) -> str:
        return "\n".join(r.getMessage() for r in self.records if r.levelno >= level)


async def init_hub(tmp_path: Path, config_text: str) -> tuple[JupyterHub, Captured]:
    """Initialise a JupyterHub application from config text, as `jupyterhub -f` would."""
    config_file = tmp_path / "jupyterhub_config.py"
    config_file.write_text(textwrap.dedent(config_text))
    app = JupyterHub(
        config_file=str(config_file),
        db_url=f"sqlite:///{tmp_path / 'jupyterhub.sqlite'}",
        cookie_secret_file=str(tmp_path / "cookie_secret"),
        pid_file="",
    )
    captured = Captured()
    logging.getLogger("JupyterHub").addHandler(captured)
    try:
        await app.initialize([])
    finally:
        logging.getLogger("JupyterHub").removeHandler(captured)
    return app, captured


def with_recipe(recipe: Path) -> str:
    """A config that uses a recipe the way the docs tell admins to."""
    return f"""
        c = get_config()
        c.JupyterHub.spawner_class = "ext-docker"
        load_subconfig({str(recipe)!r})
        import jupyterhub_ext
        jupyterhub_ext.setup(c)
    """


@pytest.fixture
def recipe_env(monkeypatch, tmp_path):
    for key, value in RECIPE_ENV.items():
        monkeypatch.setenv(key, value)
    allow = tmp_path / "allowed_users.txt"
    allow.write_text("# the lab\nAlice@Example.org\nbob@example.org  # visiting\n\n")
    monkeypatch.setenv("JUPYTERHUB_ALLOWED_USERS_FILE", str(allow))
    monkeypatch.chdir(tmp_path)


def recipe(name: str) -> Path:
    path = RECIPES / name
    assert path.is_file(), path
    return path


def test_every_recipe_is_tested():
    """A recipe added to docs/recipes needs its own check here."""
    tested = {
        "native-admin-approval.py",
        "native-open-signup.py",
        "native-signup-closed.py",
        "github.py",
        "google-allowlist.py",
        "gitlab.py",
        "generic-oauth.py",
    }
    assert {p.name for p in RECIPES.glob("*.py")} == tested


def assert_common(app: JupyterHub, log: Captured) -> None:
    assert app.spawner_class is ExtDockerSpawner
    assert jupyterhub_ext.template_path() in app.template_paths
    assert "custom:jupyterhub-ext:manage-volumes" in app.custom_scopes
    # an authenticator that would let nobody in is the classic first-day mistake
    assert "nobody can login" not in log.text()


@pytest.mark.parametrize(
    "name, open_signup, enable_signup",
    [
        ("native-admin-approval.py", False, True),
        ("native-open-signup.py", True, True),
        ("native-signup-closed.py", False, False),
    ],
)
async def test_native_recipes(tmp_path, recipe_env, name, open_signup, enable_signup):
    from nativeauthenticator import NativeAuthenticator

    from jupyterhub_ext.accounts.signup import AccountsMissing, main

    config = with_recipe(recipe(name))
    if enable_signup:
        # sign-up open: the hub refuses to start until the admins have accounts
        with pytest.raises(AccountsMissing) as refused:
            await init_hub(tmp_path, config)
        assert refused.value.names == ["boss", "jdoe"]
        (tmp_path / "pw").write_text("a-long-enough-password-7\n")
        for admin in ("jdoe", "boss"):
            argv = ["-f", str(tmp_path / "jupyterhub_config.py"), admin]
            assert main([*argv, "--password-file", str(tmp_path / "pw")]) == 0
    app, log = await init_hub(tmp_path, config)
    assert_common(app, log)
    auth = app.authenticator
    assert isinstance(auth, NativeAuthenticator)
    assert auth.open_signup is open_signup
    assert auth.enable_signup is enable_signup
    assert auth.admin_users == {"jdoe", "boss"}
    # the admins get jupyterhub_ext's admin role too
    role = next(r for r in app.load_roles if r["name"] == "jupyterhub-ext-admin")
    assert set(role["users"]) == {"jdoe", "boss"}
    # NativeAuthenticator's pages are served by this hub
    routes = {h[0] for h in app.handlers}
    assert "/hub/signup" in routes and "/hub/authorize" in routes


@pytest.mark.parametrize("name", sorted(p.name for p in RECIPES.glob("native-*.py")))
async def test_native_recipes_name_no_admin_of_their_own(tmp_path, recipe_env, monkeypatch, name):
    """No built-in admin name: without JUPYTERHUB_ADMIN_USERS the hub stops, saying so."""
    monkeypatch.delenv("JUPYTERHUB_ADMIN_USERS")
    with pytest.raises(SystemExit, match="JUPYTERHUB_ADMIN_USERS is not set"):
        await init_hub(tmp_path, with_recipe(recipe(name)))


async def test_github_recipe(tmp_path, recipe_env):
    from oauthenticator.github import GitHubOAuthenticator

    app, log = await init_hub(tmp_path, with_recipe(recipe("github.py")))
    assert_common(app, log)
    auth = app.authenticator
    assert isinstance(auth, GitHubOAuthenticator)
    assert auth.client_id == "gh-client-id" and auth.client_secret == "gh-client-secret"
    assert auth.allowed_organizations == {"my-lab", "my-lab:admins"}
    assert "read:org" in auth.scope
    assert auth.oauth_callback_url == RECIPE_ENV["OAUTH_CALLBACK_URL"]


async def test_google_allowlist_recipe(tmp_path, recipe_env):
    from oauthenticator.google import GoogleOAuthenticator

    app, log = await init_hub(tmp_path, with_recipe(recipe("google-allowlist.py")))
    assert_common(app, log)
    auth = app.authenticator
    assert isinstance(auth, GoogleOAuthenticator)
    # comments and blank lines skipped, addresses lower-cased like the hub does
    assert {"alice@example.org", "bob@example.org"} <= auth.allowed_users
    assert not any("#" in u or " " in u for u in auth.allowed_users)

    def model(email: str) -> dict:
        user = {"email": email, "domain": email.split("@")[1], "verified_email": True}
        return {"name": email, "admin": False, "auth_state": {auth.user_auth_state_key: user}}

    assert await auth.check_allowed("alice@example.org", model("alice@example.org"))
    assert not await auth.check_allowed("mallory@example.org", model("mallory@example.org"))
    assert auth.allow_existing_users is False


async def test_google_recipe_needs_its_allow_list(tmp_path, recipe_env, monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_ALLOWED_USERS_FILE", str(tmp_path / "missing.txt"))
    with pytest.raises(FileNotFoundError):
        await init_hub(tmp_path, with_recipe(recipe("google-allowlist.py")))


async def test_gitlab_recipe(tmp_path, recipe_env):
    from oauthenticator.gitlab import GitLabOAuthenticator

    app, log = await init_hub(tmp_path, with_recipe(recipe("gitlab.py")))
    assert_common(app, log)
    auth = app.authenticator
    assert isinstance(auth, GitLabOAuthenticator)
    assert auth.gitlab_url == "https://gitlab.example.org"
    assert auth.authorize_url.startswith("https://gitlab.example.org/")
    assert auth.allowed_gitlab_groups == {"lab", "lab/students"}
    assert auth.client_id == "gl-client-id"


async def test_generic_oauth_recipe(tmp_path, recipe_env):
    from oauthenticator.generic import GenericOAuthenticator

    app, log = await init_hub(tmp_path, with_recipe(recipe("generic-oauth.py")))
    assert_common(app, log)
    auth = app.authenticator
    assert isinstance(auth, GenericOAuthenticator)
    assert auth.manage_groups is True
    assert auth.token_url == RECIPE_ENV["OAUTH2_TOKEN_URL"]
    assert auth.username_claim == "preferred_username"
    # the provider's admin group is the hub group bound to jupyterhub_ext's admin role
    role = next(r for r in app.load_roles if r["name"] == "jupyterhub-ext-admin")
    assert auth.admin_groups <= set(role["groups"])


async def test_oauth_rename_mapping(tmp_path, recipe_env):
    """What the rename page tells OAuth admins to do: username_map old -> new."""
    app, log = await init_hub(
        tmp_path,
        f"""
        c = get_config()
        c.JupyterHub.spawner_class = "ext-docker"
        load_subconfig({str(recipe("github.py"))!r})
        c.Authenticator.username_map = {{"alice-old": "alice"}}
        import jupyterhub_ext
        jupyterhub_ext.setup(c)
        """,
    )
    assert app.authenticator.normalize_username("Alice-Old") == "alice"
    assert app.authenticator.normalize_username("bob") == "bob"


def test_setup_survives_importing_its_module():
    """`jupyterhub_ext.setup` stays the function, even after the submodule is imported.

    (Python binds a submodule as a package attribute on its first import; that
    used to replace `setup()` by the module, breaking a second config load in
    one process, or any config loaded after something imported the module.)
    """
    import importlib

    from traitlets.config import Config

    importlib.import_module("jupyterhub_ext.hubconfig")
    assert callable(jupyterhub_ext.setup)
    for _ in range(2):
        c = Config()
        jupyterhub_ext.setup(c)
        assert jupyterhub_ext.template_path() in c.JupyterHub.template_paths
