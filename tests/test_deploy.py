"""The deployment files the docs ship, checked for real.

- deploy/jupyterhub_config.py loads into a JupyterHub application with the
  documented environment, and refuses to start without a login method.
- deploy/docker-compose.yml validates with Docker Compose (skipped when no
  compose is installed) and keeps its security properties.
- deploy/swarm/: the stack file keeps its properties (hub on a manager, the
  only one with the socket, an attachable overlay for the servers) and renders
  with `docker stack config` (or `docker-compose config`; skipped without
  either); its jupyterhub_config.py loads with ExtSwarmSpawner.
- deploy/Dockerfile builds from a local base image, offline (wheels
  downloaded on the host, as scripts/build_image.py does), and the image runs
  a hub that spawns a real server, its in-hub idle culler on (no culler service).
- deploy/ops/*-user-volumes.sh back up and restore one user's volumes on the
  real engine.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import secrets
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import requests
import yaml
from test_recipes import init_hub

from hubctl import free_port

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
RECIPES = ROOT / "docs" / "recipes"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "jupyterhub-ext"


# -- deploy/jupyterhub_config.py ------------------------------------------------


@pytest.fixture
def deploy_env(monkeypatch, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("JUPYTERHUB_DATA_DIR", str(data))
    monkeypatch.setenv("JUPYTERHUB_SINGLEUSER_IMAGE", "jupyterhub-ext/singleuser:test")
    monkeypatch.setenv("JUPYTERHUB_AUTH_CONFIG", str(RECIPES / "native-admin-approval.py"))
    monkeypatch.setenv("JUPYTERHUB_ADMIN_USERS", "jdoe")
    monkeypatch.setenv("JUPYTERHUB_MEM_LIMIT", "4G")
    monkeypatch.chdir(tmp_path)
    yield data
    # the config adds a file handler to the audit logger; do not leak it
    audit = logging.getLogger("jupyterhub_ext.audit")
    for h in list(audit.handlers):
        if getattr(h, "baseFilename", "").startswith(str(tmp_path)):
            audit.removeHandler(h)
            h.close()


async def test_deploy_config_loads(tmp_path, deploy_env):
    from jupyterhub_ext.accounts.signup import AccountsMissing, main
    from jupyterhub_ext.culler import CullerConfig

    config = f"load_subconfig({str(DEPLOY / 'jupyterhub_config.py')!r})\n"
    # sign-up is open in the recipe: no start until the admin has an account,
    # made with the command the guide shows
    with pytest.raises(AccountsMissing, match="jdoe"):
        await init_hub(tmp_path, config)
    (tmp_path / "pw").write_text("a-long-enough-password-7\n")
    argv = ["-f", str(tmp_path / "jupyterhub_config.py"), "jdoe"]
    assert main([*argv, "--password-file", str(tmp_path / "pw")]) == 0
    app, _ = await init_hub(tmp_path, config)
    from nativeauthenticator import NativeAuthenticator

    from jupyterhub_ext.spawner import ExtDockerSpawner

    assert app.spawner_class is ExtDockerSpawner
    assert isinstance(app.authenticator, NativeAuthenticator)
    # state lives in the data volume
    assert (deploy_env / "jupyterhub.sqlite").is_file()
    assert (deploy_env / "jupyterhub_cookie_secret").is_file()
    spawner_cfg = app.config.ExtDockerSpawner
    assert spawner_cfg.network_name == "jupyterhub-users"
    assert spawner_cfg.use_internal_ip is True
    assert spawner_cfg.mem_limit == "4G"
    assert app.hub_connect_url.startswith("http://hub:8081/")
    # the hub culls, with a warning: no culler service, no role with delete:servers
    assert not [s for s in app.services if "cull" in s["name"]], app.services
    assert not [r for r in app.load_roles if "delete:servers" in r.get("scopes", [])]
    culler = CullerConfig(config=app.config)
    assert culler.enabled and (culler.timeout, culler.warning) == (3600, 600)
    assert (culler.extension, culler.max_extensions) == (3600, 2)
    assert culler.state_path == f"{deploy_env}/culler.json"  # in the data volume

    # the audit section: a line logged by jupyterhub_ext lands in the file
    logging.getLogger("jupyterhub_ext.audit").info("docs-test-line actor=admin")
    for h in logging.getLogger("jupyterhub_ext.audit").handlers:
        h.flush()
    assert "docs-test-line actor=admin" in (deploy_env / "audit.log").read_text()
    try:
        from jupyterhub_ext.audit import audit
    except ImportError:
        return  # the audit helper lands with the features
    audit("admin", "docs-check", "alice", "ok")
    for h in logging.getLogger("jupyterhub_ext.audit").handlers:
        h.flush()
    text = (deploy_env / "audit.log").read_text()
    assert "docs-check" in text and "alice" in text


async def test_deploy_config_without_login_refuses(tmp_path, deploy_env, monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_AUTH_CONFIG", str(tmp_path / "auth.py"))
    (tmp_path / "auth.py").mkdir()  # what compose makes of a missing bind source
    with pytest.raises(SystemExit, match="No login method configured"):
        await init_hub(tmp_path, f"load_subconfig({str(DEPLOY / 'jupyterhub_config.py')!r})\n")


# -- deploy/docker-compose.yml ----------------------------------------------------


def compose_command() -> list[str] | None:
    if shutil.which("docker"):
        r = subprocess.run(["docker", "compose", "version"], capture_output=True)
        if r.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def compose_model() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def test_compose_security_properties():
    """What the deployment page promises, read from the file itself."""
    model = compose_model()
    services = model["services"]
    sock = "/var/run/docker.sock"
    with_sock = [n for n, s in services.items() if any(sock in v for v in s.get("volumes", []))]
    assert with_sock == ["hub"], "only the hub may get the Docker socket"
    users = model["networks"]["users"]
    assert users["internal"] is True and users["name"] == "jupyterhub-users"
    assert "hub" in services["hub"]["networks"]["users"]["aliases"]
    assert "users" not in (services["traefik"].get("networks") or [])
    assert any(v.startswith("hub-data:/srv/jupyterhub/data") for v in services["hub"]["volumes"])
    assert "ports" not in services["hub"], "the hub is reached through Traefik only"
    assert {p.split(":")[-1] for p in services["traefik"]["ports"]} == {"80", "443"}
    cmd = " ".join(services["traefik"]["command"])
    assert "redirections.entrypoint.scheme=https" in cmd and "tls.certresolver" in cmd
    dynamic = yaml.safe_load((DEPLOY / "traefik" / "dynamic.yml").read_text())
    assert dynamic["http"]["services"]["jupyterhub"]["loadBalancer"]["servers"] == [
        {"url": "http://hub:8000"}
    ]
    # the network name the hub config uses is the one compose creates
    assert services["hub"]["environment"]["JUPYTERHUB_DOCKER_NETWORK"] == users["name"]


def test_compose_config_validates(tmp_path):
    cmd = compose_command()
    if cmd is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    work = tmp_path / "deploy"
    shutil.copytree(DEPLOY, work)
    shutil.copy(work / ".env.example", work / ".env")
    shutil.copy(RECIPES / "native-admin-approval.py", work / "auth.py")
    r = subprocess.run([*cmd, "config"], cwd=work, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    resolved = yaml.safe_load(r.stdout)
    assert resolved["networks"]["users"]["internal"] is True
    # no admin name is shipped: the admin sets their own
    env_lines = (work / ".env.example").read_text().splitlines()
    assert "JUPYTERHUB_ADMIN_USERS=" in env_lines
    assert "hub.example.org" in " ".join(resolved["services"]["traefik"]["command"])
    # a missing required setting is refused with the documented message
    (work / ".env").write_text(
        "\n".join(
            line
            for line in (work / ".env.example").read_text().splitlines()
            if not line.startswith("HUB_DOMAIN=")
        )
    )
    r = subprocess.run([*cmd, "config"], cwd=work, capture_output=True, text=True)
    assert r.returncode != 0 and "HUB_DOMAIN" in r.stderr


# -- deploy/swarm/ -----------------------------------------------------------------

SWARM = DEPLOY / "swarm"


def swarm_model() -> dict:
    return yaml.safe_load((SWARM / "docker-stack.yml").read_text())


def test_swarm_stack_properties():
    """What docs/deployment/swarm.md promises, read from the stack file itself."""
    model = swarm_model()
    services = model["services"]
    # the hub runs on a manager (the one labelled for it: its database is a local volume)
    hub = services["hub"]
    constraints = hub["deploy"]["placement"]["constraints"]
    assert "node.role == manager" in constraints
    assert "node.labels.jupyterhub.hub == true" in constraints
    assert hub["deploy"]["replicas"] == 1
    assert hub["deploy"]["update_config"]["order"] == "stop-first", "never two hubs on one db"
    # only the hub gets the Docker socket
    sock = "/var/run/docker.sock"
    with_sock = [n for n, s in services.items() if any(sock in v for v in s.get("volumes", []))]
    assert with_sock == ["hub"], "only the hub may get the Docker socket"
    assert any(v.startswith("hub-data:/srv/jupyterhub/data") for v in hub["volumes"])
    # the servers' network: an attachable overlay, the one the hub's config names
    users = model["networks"]["users"]
    assert users["driver"] == "overlay" and users["attachable"] is True
    assert users["internal"] is True
    assert hub["environment"]["JUPYTERHUB_SWARM_NETWORK"] == users["name"]
    assert "hub" in hub["networks"]["users"]["aliases"]
    assert "users" not in (services["traefik"].get("networks") or [])
    # no routing mesh: every published port is on its node, every service found by DNS
    for name, svc in services.items():
        assert svc["deploy"]["endpoint_mode"] == "dnsrr", name
        for port in svc.get("ports", []):
            assert isinstance(port, dict) and port["mode"] == "host", (name, port)
    assert "ports" not in hub, "the hub is reached through Traefik only"
    assert {p["published"] for p in services["traefik"]["ports"]} == {80, 443}
    # a registry for the single-user image, next to the hub
    registry = services["registry"]
    assert registry["image"] == "${REGISTRY_IMAGE:-registry:2}"
    assert "node.role == manager" in registry["deploy"]["placement"]["constraints"]
    # the culler runs inside the hub (CullerConfig), not as a service of its own
    assert not any("culler" in n for n in services)
    # the files the hub reads are Swarm configs made from the files next to the stack
    configs = model["configs"]
    assert configs["jupyterhub_config"]["file"] == "./jupyterhub_config.py"
    assert configs["auth"]["file"] == "./auth.py"
    assert (SWARM / configs["traefik_dynamic"]["file"]).is_file()
    targets = {c["source"]: c["target"] for c in hub["configs"]}
    assert targets["jupyterhub_config"] == "/srv/jupyterhub/jupyterhub_config.py"
    assert targets["auth"] == "/srv/jupyterhub/auth.py"
    # the hub's config: ExtSwarmSpawner on that network, jupyterhub_ext registered last
    text = (SWARM / "jupyterhub_config.py").read_text()
    assert 'c.JupyterHub.spawner_class = "ext-swarm"' in text
    assert "c.ExtSwarmSpawner.swarm_network" in text
    assert text.rstrip().endswith("jupyterhub_ext.setup(c)")
    assert "jupyterhub_idle_culler" not in text and "c.CullerConfig.enabled" in text


async def test_swarm_config_loads(tmp_path, deploy_env, monkeypatch):
    from jupyterhub_ext.accounts.signup import main
    from jupyterhub_ext.culler import CullerConfig
    from jupyterhub_ext.swarm.spawner import ExtSwarmSpawner

    monkeypatch.setenv("JUPYTERHUB_SWARM_NETWORK", "jupyterhub-swarm")
    monkeypatch.setenv("JUPYTERHUB_SINGLEUSER_IMAGE", "10.0.0.11:5000/singleuser:test")
    config = f"load_subconfig({str(SWARM / 'jupyterhub_config.py')!r})\n"
    (tmp_path / "jupyterhub_config.py").write_text(config)
    (tmp_path / "pw").write_text("a-long-enough-password-7\n")
    argv = ["-f", str(tmp_path / "jupyterhub_config.py"), "jdoe"]
    assert main([*argv, "--password-file", str(tmp_path / "pw")]) == 0
    app, _ = await init_hub(tmp_path, config)
    assert app.spawner_class is ExtSwarmSpawner
    spawner_cfg = app.config.ExtSwarmSpawner
    assert spawner_cfg.swarm_network == "jupyterhub-swarm"
    assert spawner_cfg.image == "10.0.0.11:5000/singleuser:test"
    assert spawner_cfg.docker_sock_group == ""
    assert spawner_cfg.environment == {"NVIDIA_VISIBLE_DEVICES": "void"}
    assert app.hub_connect_url.startswith("http://hub:8081/")
    assert not [s for s in app.services if "cull" in s["name"]], "the hub culls (CullerConfig)"
    culler = CullerConfig(config=app.config)
    assert culler.enabled and culler.timeout == 3600
    assert culler.state_path == f"{deploy_env}/culler.json"  # in the data volume
    assert (deploy_env / "jupyterhub.sqlite").is_file()
    # a spawner made from this config passes the Swarm checks (nothing Swarm would drop)
    from jupyterhub_ext.swarm.hubcheck import problems

    assert problems(app.config) == []


def culling_section(path: Path) -> str:
    text = path.read_text()
    start = text.index("# --- Idle culling")
    return text[start : text.index("# --- end of the idle culling section ---", start)]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, (True, 3600, 600, 3600, 2)),
        ({"JUPYTERHUB_IDLE_TIMEOUT": "1200"}, (True, 1200, 300, 3600, 2)),
        (
            {
                "JUPYTERHUB_IDLE_TIMEOUT": "7200",
                "JUPYTERHUB_IDLE_WARNING": "900",
                "JUPYTERHUB_IDLE_EXTENSION": "1800",
                "JUPYTERHUB_IDLE_MAX_EXTENSIONS": "0",
            },
            (True, 7200, 900, 1800, 0),
        ),
        ({"JUPYTERHUB_IDLE_TIMEOUT": "0"}, (False, 0, 0, 3600, 2)),
    ],
)
def test_deployments_cull_in_the_hub_with_settings_from_the_environment(monkeypatch, env, expected):
    """Compose and Swarm: the same culling section, its settings from the environment."""
    from traitlets.config import Config

    from jupyterhub_ext.culler import CullerConfig

    compose = culling_section(DEPLOY / "jupyterhub_config.py")
    assert compose == culling_section(SWARM / "jupyterhub_config.py")
    assert "jupyterhub_idle_culler" not in compose and "services" not in compose
    for name in list(os.environ):
        if name.startswith("JUPYTERHUB_IDLE_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    c = Config()
    exec(compose, {"c": c, "os": os, "DATA": "/data"})
    cfg = CullerConfig(config=c)
    got = (cfg.enabled, cfg.timeout, cfg.warning, cfg.extension, cfg.max_extensions)
    assert got == expected
    assert cfg.state_path == "/data/culler.json"


async def test_swarm_config_without_login_refuses(tmp_path, deploy_env, monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_AUTH_CONFIG", str(tmp_path / "auth.py"))
    with pytest.raises(SystemExit, match="No login method configured"):
        await init_hub(tmp_path, f"load_subconfig({str(SWARM / 'jupyterhub_config.py')!r})\n")


def stack_config_command() -> list[str] | None:
    """`docker stack config` (renders a stack file offline), else `docker-compose config`."""
    if shutil.which("docker"):
        r = subprocess.run(["docker", "stack", "config", "--help"], capture_output=True)
        if r.returncode == 0:
            return ["docker", "stack", "config", "-c", "docker-stack.yml"]
    if shutil.which("docker-compose"):
        return ["docker-compose", "-f", "docker-stack.yml", "config"]
    return None


def test_swarm_stack_validates(tmp_path):
    cmd = stack_config_command()
    if cmd is None:
        pytest.skip("neither `docker stack config` nor `docker-compose` is installed")
    work = tmp_path / "deploy"
    shutil.copytree(DEPLOY, work, ignore=shutil.ignore_patterns("wheels", "grafana"))
    swarm = work / "swarm"
    shutil.copy(swarm / ".env.example", swarm / ".env")
    shutil.copy(RECIPES / "native-admin-approval.py", swarm / "auth.py")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HUB_", "ACME_"))}
    for line in (swarm / ".env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value
    r = subprocess.run(cmd, cwd=swarm, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    resolved = yaml.safe_load(r.stdout)
    assert resolved["networks"]["users"]["attachable"] is True
    assert "hub.example.org" in " ".join(resolved["services"]["traefik"]["command"])
    if cmd[:2] == ["docker", "stack"]:
        assert resolved["configs"]["jupyterhub_config"]["name"] == "jupyterhub-config-1"
    # a missing required setting is refused with the documented message
    del env["HUB_DOMAIN"]
    r = subprocess.run(cmd, cwd=swarm, capture_output=True, text=True, env=env)
    assert r.returncode != 0 and "HUB_DOMAIN" in r.stderr


# -- deploy/Dockerfile ------------------------------------------------------------


def _build(client: docker.DockerClient, path: Path, tag: str, buildargs: dict) -> None:
    for chunk in client.api.build(
        path=str(path), tag=tag, buildargs=buildargs, rm=True, decode=True, network_mode="none"
    ):
        if "error" in chunk:
            raise RuntimeError(f"docker build {tag} failed: {chunk['error']}")


def _digest(*parts: bytes | str) -> str:
    """The same input hash the single-user image build uses."""
    return _load_build_image()._digest(*parts)


def _dockerfile_arg(name: str) -> str:
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        if line.startswith(f"ARG {name}="):
            return line.split("=", 1)[1].strip().strip('"')
    raise AssertionError(f"ARG {name} not in deploy/Dockerfile")


@pytest.fixture(scope="session")
def hub_wheels(tmp_path_factory) -> Path:
    """This package's wheel and every wheel the hub image installs, made on the host."""
    out = tmp_path_factory.mktemp("hub-wheels")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(ROOT)],
        check=True,
    )
    (own,) = out.glob("jupyterhub_ext-*.whl")
    packages = [f"jupyterhub=={_dockerfile_arg('JUPYTERHUB_VERSION')}"]
    packages += _dockerfile_arg("HUB_PACKAGES").split()
    deps = CACHE / f"hub-wheels-{_digest((ROOT / 'pyproject.toml').read_bytes(), *packages)}"
    if not (deps / ".complete").exists():
        deps.mkdir(parents=True, exist_ok=True)
        # same Python minor version and glibc as the Debian 12 base
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "-w", str(deps), str(own), *packages],
            check=True,
        )
        (deps / ".complete").touch()
    for whl in deps.glob("*.whl"):
        if not whl.name.startswith("jupyterhub_ext-"):
            shutil.copy(whl, out / whl.name)
    return out


def _load_build_image():
    spec = importlib.util.spec_from_file_location(
        "build_image", ROOT / "scripts" / "build_image.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def node_image(docker_client, images) -> str:
    """Stands in for node:22-bookworm-slim (no registry here): the host's node and CHP."""
    node = shutil.which("node")
    chp = shutil.which("configurable-http-proxy")
    if not node or not chp:
        pytest.skip("node and configurable-http-proxy are needed on the host for the hub image")
    node = Path(node).resolve()
    chp_dir = Path(chp).resolve().parent.parent
    assert (chp_dir / "package.json").is_file(), chp_dir
    base = _load_build_image().ensure_base(docker_client)
    version = subprocess.run([str(node), "--version"], capture_output=True, text=True).stdout
    chp_version = (chp_dir / "package.json").read_bytes()
    tag = f"jupyterhub-ext/test-node:{_digest(base, version, chp_version)}"
    try:
        docker_client.images.get(tag)
        return tag
    except docker.errors.ImageNotFound:
        pass
    with __import__("tempfile").TemporaryDirectory() as tmp:
        ctx = Path(tmp)
        shutil.copy(node, ctx / "node")
        shutil.copytree(chp_dir, ctx / "configurable-http-proxy", symlinks=True)
        (ctx / "Dockerfile").write_text(
            "ARG BASE\nFROM ${BASE}\n"
            "COPY node /usr/local/bin/node\n"
            "COPY configurable-http-proxy /usr/local/lib/node_modules/configurable-http-proxy\n"
        )
        _build(docker_client, ctx, tag, {"BASE": base})
    return tag


@pytest.fixture(scope="session")
def hub_image(docker_client, hub_wheels, node_image, tmp_path_factory) -> Iterator[str]:
    """deploy/Dockerfile built FROM the local Debian base, with no network at all.

    The engine is shared: other checkouts' runs use their own hub-test tags
    (the wheel's file times differ per checkout), so this run removes only the
    image it built itself, at its end; a tag it found is another run's.
    """
    base = _load_build_image().ensure_base(docker_client)
    ctx = tmp_path_factory.mktemp("hub-image")
    for name in ("Dockerfile", "jupyterhub_config.py", ".dockerignore"):
        shutil.copy(DEPLOY / name, ctx / name)
    shutil.copytree(hub_wheels, ctx / "wheels")
    inputs = [p.read_bytes() for p in sorted(ctx.rglob("*")) if p.is_file()]
    tag = f"jupyterhub-ext/hub-test:{_digest(base, node_image, *inputs)}"
    try:
        docker_client.images.get(tag)
        found = True
    except docker.errors.ImageNotFound:
        found = False
    if found:
        yield tag
        return
    _build(
        docker_client,
        ctx,
        tag,
        {"BASE": base, "NODE_IMAGE": node_image, "PIP_ARGS": "--no-index"},
    )
    yield tag
    try:
        # not forced: an image a container still uses stays
        docker_client.images.remove(tag)
    except docker.errors.APIError:
        pass


def _socket_path() -> str:
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        pytest.skip(f"the hub container needs a local Docker socket, DOCKER_HOST is {host}")
    return host[len("unix://") :]


@pytest.mark.docker
def test_hub_image_runs_a_hub(docker_client, hub_image, lab_image, run_prefix, tmp_path):
    """The built image: versions, then a real hub that spawns, with its in-hub culler on."""
    out = docker_client.containers.run(
        hub_image,
        [
            "sh",
            "-c",
            "jupyterhub --version && configurable-http-proxy --version && "
            "python3 -c 'import jupyterhub_ext, oauthenticator, nativeauthenticator; "
            "print(jupyterhub_ext.template_path())'",
        ],
        entrypoint=[],
        network_mode="none",
        remove=True,
    ).decode()
    assert out.splitlines()[0] == "6.1.1", out
    assert "/opt/hub/lib/python3.11/site-packages/jupyterhub_ext/templates" in out

    port, hub_port, api_port = free_port(), free_port(), free_port()
    token = secrets.token_hex(16)
    prefix = f"{run_prefix}-img"
    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / "auth.py").write_text(
        "c = get_config()  # noqa: F821\n"
        'c.JupyterHub.authenticator_class = "dummy"\n'
        "c.Authenticator.allow_all = True\n"
    )
    # The image's own config, with this machine's differences: loopback ports
    # and host networking instead of the compose networks.
    (tmp_path / "test_config.py").write_text(
        textwrap.dedent(
            f"""
            c = get_config()  # noqa: F821
            load_subconfig("/srv/jupyterhub/jupyterhub_config.py")  # noqa: F821
            c.JupyterHub.bind_url = "http://127.0.0.1:{port}"
            c.JupyterHub.hub_bind_url = "http://127.0.0.1:{hub_port}"
            c.JupyterHub.hub_connect_url = "http://127.0.0.1:{hub_port}"
            c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{api_port}"
            c.JupyterHub.cleanup_servers = True
            c.ExtDockerSpawner.network_name = "host"
            c.ExtDockerSpawner.prefix = "{prefix}"
            c.ExtDockerSpawner.volume_set = {{
                "home": {{"name": "{prefix}-{{username}}-home", "mount": "/home/jovyan"}},
            }}
            c.Spawner.start_timeout = 120
            c.Spawner.http_timeout = 120
            c.JupyterHub.services = list(c.JupyterHub.services) + [
                {{"name": "test-admin", "api_token": "{token}"}}
            ]
            c.JupyterHub.load_roles = list(c.JupyterHub.load_roles) + [
                {{"name": "admin", "services": ["test-admin"]}}
            ]
            """
        )
    )
    hub = docker_client.containers.run(
        hub_image,
        ["jupyterhub", "-f", "/srv/jupyterhub/test_config.py"],
        name=f"{prefix}-hub",
        detach=True,
        network_mode="host",
        environment={
            "JUPYTERHUB_SINGLEUSER_IMAGE": lab_image,
            "JUPYTERHUB_AUTH_CONFIG": "/srv/jupyterhub/auth.py",
            "JUPYTERHUB_IDLE_TIMEOUT": "3600",
        },
        volumes={
            _socket_path(): {"bind": "/var/run/docker.sock", "mode": "rw"},
            str(data): {"bind": "/srv/jupyterhub/data", "mode": "rw"},
            str(tmp_path / "test_config.py"): {
                "bind": "/srv/jupyterhub/test_config.py",
                "mode": "ro",
            },
            str(tmp_path / "auth.py"): {"bind": "/srv/jupyterhub/auth.py", "mode": "ro"},
        },
    )
    url = f"http://127.0.0.1:{port}"
    s = requests.Session()
    s.headers["Authorization"] = f"token {token}"
    try:
        deadline = time.monotonic() + 90
        while True:
            hub.reload()
            assert hub.status == "running", hub.logs().decode()[-3000:]
            try:
                r = s.get(f"{url}/hub/api/", timeout=2)
                if r.status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, hub.logs().decode()[-3000:]
            time.sleep(0.5)
        assert r.json()["version"] == "6.1.1"

        # the culler is the hub's own: no culler service or process in the container
        services = s.get(f"{url}/hub/api/services", timeout=10).json()
        assert not [n for n in services if "cull" in n], services
        top = hub.top(ps_args="-eo pid,args")
        assert not any("idle_culler" in " ".join(p) for p in top["Processes"]), top

        # a real server, spawned by the hub in the image through the socket
        assert s.post(f"{url}/hub/api/users/alice", timeout=10).status_code in (201, 409)
        assert s.post(f"{url}/hub/api/users/alice/server", timeout=30).status_code in (201, 202)
        deadline = time.monotonic() + 150
        while True:
            server = s.get(f"{url}/hub/api/users/alice", timeout=10).json()["servers"].get("")
            if server and server.get("ready"):
                break
            assert time.monotonic() < deadline, hub.logs().decode()[-4000:]
            time.sleep(0.5)
        r = s.get(f"{url}/user/alice/api/status", timeout=20)
        assert r.status_code == 200, r.text
        assert (
            docker_client.volumes.get(f"{prefix}-alice-home").attrs["Labels"][
                "jupyterhub-ext.owner-name"
            ]
            == "alice"
        )
        # the in-hub culler watches it, with the deployment's settings
        kept = s.post(f"{url}/hub/api/users/alice/keep-running", timeout=10)
        assert kept.status_code == 200, kept.text
        assert kept.json()["timeout"] == 3600 and kept.json()["extensions_left"] == 1
        s.delete(f"{url}/hub/api/users/alice/server", timeout=60)

        # the hub's state (the culler's too) and the audit log are in the data volume
        names = {p.name for p in data.iterdir()}
        assert {"jupyterhub.sqlite", "jupyterhub_cookie_secret", "audit.log"} <= names
        assert "culler.json" in names
    finally:
        try:
            hub.stop(timeout=30)
        finally:
            print(hub.logs().decode()[-3000:])
            hub.remove(force=True)


@pytest.mark.docker
def test_boundary_stranger_signup_hub_image_admin_account(
    docker_client, hub_image, run_prefix, tmp_path
):
    """The compose guide's admin step, in the built image: refused start, command, start.

    The hub container with the NativeAuthenticator recipe refuses to start
    while the admin has no account; the documented command (password on
    stdin, as `docker compose run -T` passes it) creates it; then it starts.
    """
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(RECIPES / "native-admin-approval.py", tmp_path / "auth.py")
    env = {
        "JUPYTERHUB_SINGLEUSER_IMAGE": "jupyterhub-ext/singleuser:unused",
        "JUPYTERHUB_ADMIN_USERS": "jdoe",
        "JUPYTERHUB_IDLE_TIMEOUT": "0",
    }
    mounts = {
        str(data): {"bind": "/srv/jupyterhub/data", "mode": "rw"},
        str(tmp_path / "auth.py"): {"bind": "/srv/jupyterhub/auth.py", "mode": "ro"},
    }
    name = f"{run_prefix}-img-admin"

    def hub_run(suffix: str):
        return docker_client.containers.run(
            hub_image,
            name=f"{name}-{suffix}",
            detach=True,
            network_mode="none",
            # no network at all; the hub checks its proxy by host name
            hostname="localhost",
            environment=env,
            volumes=mounts,
        )

    refused = hub_run("refused")
    try:
        assert refused.wait(timeout=120)["StatusCode"] == 1
        log = refused.logs().decode()
        assert "Refusing to start" in log and "'jdoe' (c.Authenticator.admin_users)" in log
        assert "jupyterhub-ext-create-account" in log
    finally:
        refused.remove(force=True)

    docker_cli = shutil.which("docker", path="/usr/bin") or shutil.which("docker")
    if docker_cli is None:
        pytest.skip("the docker CLI is needed to pass the password on stdin")
    cmd = [docker_cli, "run", "--rm", "-i", "--network", "none", "--name", f"{name}-cmd"]
    for key, value in env.items():
        cmd += ["-e", f"{key}={value}"]
    for src, m in mounts.items():
        cmd += ["-v", f"{src}:{m['bind']}:{m['mode']}"]
    cmd += [hub_image, "jupyterhub-ext-create-account", "jdoe", "--password-file", "-"]
    out = subprocess.run(cmd, input="an-admin-password-7\n", capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "admin account 'jdoe' created" in out.stdout

    started = hub_run("started")
    try:
        deadline = time.monotonic() + 120
        while "JupyterHub is now running" not in started.logs().decode():
            started.reload()
            assert started.status == "running", started.logs().decode()[-3000:]
            assert time.monotonic() < deadline, started.logs().decode()[-3000:]
            time.sleep(0.5)
    finally:
        started.remove(force=True)


# -- deploy/ops/*-user-volumes.sh --------------------------------------------------

# uid/gid/mode/type/link target/size of every entry, and a checksum of every file
LISTING = (
    "cd /data && find . -printf '%p %U %G %m %y %l %s %T@ %n\\n' | sort && "
    "find . -type f -exec sha256sum {} + | sort"
)


def _run(client, image, volume, cmd, readonly=False) -> str:
    return client.containers.run(
        image,
        ["sh", "-c", cmd],
        mounts=[docker.types.Mount("/data", volume, type="volume", read_only=readonly)],
        network_mode="none",
        remove=True,
    ).decode()


@pytest.mark.docker
def test_backup_and_restore_one_users_volumes(docker_client, images, run_prefix, tmp_path):
    base = _load_build_image().ensure_base(docker_client)
    env = dict(os.environ, HELPER_IMAGE=base)
    alice, bob = f"{run_prefix}-alice", f"{run_prefix}-bob"

    def make(name: str, owner: str, key: str) -> str:
        docker_client.volumes.create(
            name,
            labels={
                "jupyterhub-ext.managed": "true",
                "jupyterhub-ext.owner-name": owner,
                "jupyterhub-ext.owner-id": "7",
                "jupyterhub-ext.volume-key": key,
                "jupyterhub-ext.description": "Your home directory: notebooks, settings",
            },
        )
        return name

    home, cache = make(f"{alice}-home", alice, "home"), make(f"{alice}-cache", alice, "cache")
    other = make(f"{bob}-home", bob, "home")
    _run(
        docker_client,
        base,
        home,
        "mkdir -p /data/notebooks && echo hello > /data/notebooks/a.ipynb"
        " && chown -R 1000:100 /data/notebooks && chmod 640 /data/notebooks/a.ipynb"
        " && echo secret > /data/other && chown 1234:1234 /data/other && chmod 600 /data/other"
        " && ln -s notebooks/a.ipynb /data/link && ln /data/notebooks/a.ipynb /data/hard"
        " && touch -d '2020-01-02 03:04:05' /data/notebooks/a.ipynb"
        " && head -c 3000000 /dev/urandom > /data/big.bin",
    )
    _run(docker_client, base, cache, "echo cached > /data/pip.cache")
    _run(docker_client, base, other, "echo bob > /data/bob.txt")
    before = {v: _run(docker_client, base, v, LISTING, True) for v in (home, cache)}

    backup = tmp_path / "backup"
    scripts = DEPLOY / "ops"
    # refused while alice has a running container
    runner = docker_client.containers.run(
        base,
        ["sleep", "300"],
        name=f"{alice}-server",
        labels={"jupyterhub-ext.owner-name": alice},
        network_mode="none",
        detach=True,
    )
    r = subprocess.run(
        [scripts / "backup-user-volumes.sh", alice, backup], env=env, capture_output=True, text=True
    )
    assert r.returncode == 1 and "stop it first" in r.stderr
    runner.remove(force=True)

    r = subprocess.run(
        [scripts / "backup-user-volumes.sh", alice, backup], env=env, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    assert set(r.stdout.split()) == {home, cache}
    names = {p.name for p in backup.iterdir()}
    assert f"{home}.tar.gz" in names and f"{cache}.tar.gz" in names
    assert not any(n.startswith(bob) for n in names), "another user's volume was backed up"
    assert "SHA256SUMS" in names

    # disaster: alice's home is gone, her cache is overwritten
    docker_client.volumes.get(home).remove()
    _run(docker_client, base, cache, "rm -f /data/pip.cache && echo junk > /data/junk")

    # refused while a (stopped) container still holds the volume
    holder = docker_client.containers.create(
        base,
        ["true"],
        name=f"{alice}-stopped",
        mounts=[docker.types.Mount("/data", cache, type="volume")],
        network_mode="none",
    )
    r = subprocess.run(
        [scripts / "restore-user-volumes.sh", backup], env=env, capture_output=True, text=True
    )
    assert r.returncode == 1 and "stop the server" in r.stderr
    holder.remove()

    r = subprocess.run(
        [scripts / "restore-user-volumes.sh", backup], env=env, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    for v in (home, cache):
        assert _run(docker_client, base, v, LISTING, True) == before[v], v
    labels = docker_client.volumes.get(home).attrs["Labels"]
    assert labels["jupyterhub-ext.owner-name"] == alice
    assert labels["jupyterhub-ext.volume-key"] == "home"
    assert labels["jupyterhub-ext.description"] == "Your home directory: notebooks, settings"
    assert "bob" in _run(docker_client, base, other, "cat /data/bob.txt", True)

    # a damaged archive is never restored
    with open(backup / f"{cache}.tar.gz", "ab") as f:
        f.write(b"garbage")
    r = subprocess.run(
        [scripts / "restore-user-volumes.sh", backup, cache],
        env=env,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1 and "checksums" in r.stderr
    assert _run(docker_client, base, cache, LISTING, True) == before[cache]


# -- deploy/ops/audit-to-json.py ----------------------------------------------------


def _audit_tool():
    spec = importlib.util.spec_from_file_location(
        "audit_to_json", DEPLOY / "ops" / "audit-to-json.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_audit_to_json_reads_every_line_style(tmp_path):
    tool = _audit_tool()
    lines = [
        # the deploy config's file format, plain-word values
        "2025-01-15 10:00:01,123 INFO audit actor=admin action=reset-volumes target=alice "
        'result=ok volumes={"cache": "reset"} seconds=1.5',
        # the hub's log format, JSON-quoted values
        '[I 2025-01-15 10:00:02.000 JupyterHub audit:40] AUDIT actor="admin" '
        'action="broadcast" target="all running servers" result="ok" total=3',
        "[I 2025-01-15 10:00:03.000 JupyterHub log:192] 200 GET /hub/api/ (admin@127.0.0.1)",
        # values that look like the start of a number, a name with a quote in it
        "2025-01-16 11:00:00,000 INFO audit actor=bob action=restart-server target=alice/gpu "
        'result=refused job=7c4e6313 when=2025-01-15 reason="said \\"hi\\" target=x"',
    ]
    recs = list(tool.records(lines))
    assert len(recs) == 3
    assert recs[0] == {
        "time": "2025-01-15 10:00:01",
        "actor": "admin",
        "action": "reset-volumes",
        "target": "alice",
        "result": "ok",
        "volumes": {"cache": "reset"},
        "seconds": 1.5,
    }
    assert recs[1]["target"] == "all running servers" and recs[1]["total"] == 3
    assert recs[2]["job"] == "7c4e6313" and recs[2]["when"] == "2025-01-15"
    assert recs[2]["reason"] == 'said "hi" target=x' and recs[2]["target"] == "alice/gpu"

    log = tmp_path / "audit.log"
    log.write_text("\n".join(lines) + "\n")
    out = subprocess.run(
        [sys.executable, DEPLOY / "ops" / "audit-to-json.py", "--target", "alice", str(log)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    import json

    assert [json.loads(x)["action"] for x in out] == ["reset-volumes", "restart-server"]
    out = subprocess.run(
        [sys.executable, DEPLOY / "ops" / "audit-to-json.py", "--since", "2025-01-16", str(log)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert [json.loads(x)["actor"] for x in out] == ["bob"]


def test_audit_to_json_reads_the_real_helper():
    try:
        from jupyterhub_ext.audit import audit
    except ImportError:
        pytest.skip("jupyterhub_ext.audit lands with the features")
    tool = _audit_tool()
    captured: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            captured.append(self.format(record))

    handler = Keep()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger("jupyterhub_ext.audit")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        audit("admin", "rename-user", "alice", "started", new_name="alice.b", volumes=["v 1"])
        audit('eve "x" action=forged', "broadcast", ["alice", "bob/gpu"], "ok", total=2)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    recs = list(tool.records(captured))
    assert recs[0]["actor"] == "admin" and recs[0]["new_name"] == "alice.b"
    assert recs[0]["volumes"] == ["v 1"]
    assert recs[1]["actor"] == 'eve "x" action=forged' and recs[1]["action"] == "broadcast"


# -- deploy/swarm/docker-stack.yml on the real three-node swarm ------------------------


def _stack_for_the_bed(
    hub_image: str, lab_image: str, auth: Path, port: int, tag: str, socket: str
) -> dict:
    """The stack file's hub service as shipped, with this machine's differences.

    Only the hub: Traefik's and the registry's images are not on this offline
    machine. The hub's port is published on its node for the test (Traefik's
    job in production); images and settings come from the test run.
    """
    stack = yaml.safe_load((DEPLOY / "swarm" / "docker-stack.yml").read_text())
    hub = stack["services"]["hub"]
    hub["image"] = hub_image
    hub.pop("env_file", None)
    hub["environment"] = {
        **hub.get("environment", {}),
        "JUPYTERHUB_SINGLEUSER_IMAGE": lab_image,
        "JUPYTERHUB_IDLE_TIMEOUT": "0",
        "JUPYTERHUB_GPU_MODE": "off",
        "JUPYTERHUB_ADMIN_USERS": "stackadmin",
    }
    hub["ports"] = [{"target": 8000, "published": port, "protocol": "tcp", "mode": "host"}]
    hub.pop("healthcheck", None)
    # the bed's manager keeps its socket elsewhere (three engines on one machine)
    hub["volumes"] = [
        f"{socket}:/var/run/docker.sock" if v.startswith("/var/run/docker.sock:") else v
        for v in hub["volumes"]
    ]
    stack["services"] = {"hub": hub}
    stack["networks"].pop("registry", None)
    stack["volumes"] = {"hub-data": {"name": f"{tag}-hub-data"}}
    stack["configs"] = {
        "jupyterhub_config": {
            "name": f"{tag}-config",
            "file": str(DEPLOY / "swarm" / "jupyterhub_config.py"),
        },
        "auth": {"name": f"{tag}-auth", "file": str(auth)},
    }
    return stack


def _remove_network_when_free(api: docker.APIClient, name: str, patience: float = 60) -> None:
    """The stack's overlay, once its tasks are gone (``stack rm`` returns before)."""
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        if not api.networks(names=[name]):
            return
        try:
            api.remove_network(name)
            return
        except docker.errors.APIError:
            time.sleep(1)


@pytest.mark.docker
def test_swarm_stack_hub_spawns_servers_on_the_overlay(swarm_bed, hub_image, lab_image, tmp_path):
    """The shipped hub service and config on the bed: the hub runs as a service on a
    manager, starts a user's server as a service on the attachable overlay, and
    reaches it by its service name (endpoint mode dnsrr) through the proxy."""
    swarm_bed.load_image(hub_image)
    token = secrets.token_hex(16)
    port = free_port()
    tag = f"jhxstack{secrets.token_hex(2)}"
    auth = tmp_path / "auth.py"
    auth.write_text(
        textwrap.dedent(
            f"""
            c = get_config()  # noqa: F821
            c.JupyterHub.authenticator_class = "dummy"
            c.Authenticator.allow_all = True
            c.Authenticator.admin_users = {{"stackadmin"}}
            c.ExtSwarmSpawner.prefix = "{tag}"
            # the hub's jobs on a node (volume checks at start) mount that node's
            # socket; the bed's engines keep theirs elsewhere (three on one machine)
            c.ExtSwarmSpawner.swarm_node_socket = "/run/jhx-swarm/{{node}}/docker.sock"
            c.ExtSwarmSpawner.volume_set = {{
                "home": {{"name": "{tag}-{{username}}-home", "mount": "/home/jovyan"}},
            }}
            c.JupyterHub.services = [{{"name": "test-admin", "api_token": "{token}"}}]
            c.JupyterHub.load_roles = [{{"name": "admin", "services": ["test-admin"]}}]
            """
        )
    )
    node1_socket = swarm_bed.node("node1").host.removeprefix("unix://")
    stack_file = tmp_path / "stack.yml"
    stack_file.write_text(
        yaml.safe_dump(_stack_for_the_bed(hub_image, lab_image, auth, port, tag, node1_socket))
    )
    manager = docker.APIClient(base_url=swarm_bed.manager, version="auto")
    node1 = swarm_bed.node("node1")
    spec = manager.inspect_node(node1.node_id)
    labels = {**spec["Spec"].get("Labels", {}), "jupyterhub.hub": "true"}
    manager.update_node(node1.node_id, spec["Version"]["Index"], {**spec["Spec"], "Labels": labels})
    cli = [shutil.which("docker") or "docker", "-H", swarm_bed.manager]
    url = f"http://{node1.addr}:{port}"
    session = requests.Session()
    session.headers["Authorization"] = f"token {token}"
    _remove_network_when_free(manager, "jupyterhub-swarm")  # left by an earlier run
    try:
        subprocess.run(
            [*cli, "stack", "deploy", "-c", str(stack_file), tag], check=True, timeout=120
        )
        deadline = time.monotonic() + 180
        while True:
            try:
                if session.get(f"{url}/hub/api/", timeout=3).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, [
                (t["Status"]["State"], t["Status"].get("Err"), t.get("NodeID"))
                for t in manager.tasks(filters={"service": f"{tag}_hub"})
            ] + [
                subprocess.run(
                    [*cli, "service", "logs", f"{tag}_hub"], capture_output=True, text=True
                ).stdout[-3000:]
            ]
            time.sleep(1)
        assert session.post(f"{url}/hub/api/users/alice", timeout=30).status_code == 201
        r = session.post(f"{url}/hub/api/users/alice/server", timeout=120)
        assert r.status_code in (201, 202), r.text
        deadline = time.monotonic() + 180
        while (
            not (session.get(f"{url}/hub/api/users/alice", timeout=10).json()["servers"] or {})
            .get("", {})
            .get("ready")
        ):
            assert time.monotonic() < deadline, "alice's server did not become ready"
            time.sleep(1)
        server = manager.inspect_service(f"{tag}-alice")
        assert server["Spec"]["EndpointSpec"]["Mode"] == "dnsrr"
        nets = {n["Target"] for n in server["Spec"]["TaskTemplate"]["Networks"]}
        assert manager.inspect_network("jupyterhub-swarm")["Id"] in nets
        # through the hub's proxy to the server, by its service name on the overlay
        alice = session.post(f"{url}/hub/api/users/alice/tokens", json={}, timeout=30).json()[
            "token"
        ]
        r = requests.get(
            f"{url}/user/alice/api/status", headers={"Authorization": f"token {alice}"}, timeout=30
        )
        assert r.status_code == 200, r.text
    finally:
        subprocess.run([*cli, "stack", "rm", tag], timeout=60)
        for svc in manager.services(filters={"name": tag}):
            manager.remove_service(svc["ID"])
        _remove_network_when_free(manager, "jupyterhub-swarm")
        spec = manager.inspect_node(node1.node_id)
        labels = {k: v for k, v in spec["Spec"].get("Labels", {}).items() if k != "jupyterhub.hub"}
        manager.update_node(
            node1.node_id, spec["Version"]["Index"], {**spec["Spec"], "Labels": labels}
        )
        manager.close()
