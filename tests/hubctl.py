"""Drive a real JupyterHub (with configurable-http-proxy) for tests and benchmarks.

The hub runs as a subprocess with a generated config; every test object it
makes (containers, volumes) carries a per-run name prefix, so cleanup removes
exactly what this run made.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import docker
import requests

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOCKETS = (
    "unix:///run/jupyterhub-ext-docker/docker.sock",
    "unix:///var/run/docker.sock",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def docker_host() -> str | None:
    """The DOCKER_HOST of an engine that answers, starting our own if allowed."""
    candidates = [os.environ["DOCKER_HOST"]] if os.environ.get("DOCKER_HOST") else []
    candidates += [s for s in DEFAULT_SOCKETS if s not in candidates]
    for url in candidates:
        try:
            docker.APIClient(base_url=url, version="auto", timeout=5).ping()
            return url
        except Exception:
            continue
    if os.geteuid() != 0 or not shutil.which("dockerd"):
        return None
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "docker-engine.sh"), "start"],
        capture_output=True,
        text=True,
    )
    return out.stdout.strip().splitlines()[-1] if out.returncode == 0 else None


def build_images() -> tuple[str, str]:
    """(lab image, plain image without the notifications extension), cached by input hash."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_image.py")],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    lab, plain = out.stdout.split()[-2:]
    return lab, plain


class HubError(RuntimeError):
    pass


class Hub:
    """A running JupyterHub; ``api()`` talks to it as an admin service token."""

    def __init__(
        self,
        workdir: Path,
        *,
        image: str,
        prefix: str,
        config: str = "",
        authenticator: str = "dummy",
        spawner_class: str = "ext-docker",
        setup: bool = True,
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.image = image
        self.prefix = prefix
        self.port = free_port()
        self.hub_port = free_port()
        self.proxy_api_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = secrets.token_hex(16)
        self.config_file = self.workdir / "jupyterhub_config.py"
        self.log_file = self.workdir / "jupyterhub.log"
        self.config_file.write_text(self._config(config, authenticator, spawner_class, setup))
        self.proc: subprocess.Popen | None = None
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"token {self.token}"

    def _config(self, extra: str, authenticator: str, spawner_class: str, setup: bool) -> str:
        w = self.workdir
        # NativeAuthenticator hubs refuse to start while an admin name has no
        # account (jupyterhub_ext.accounts.signup); their tests use the service token
        admins = "set()" if authenticator == "native" else '{"admin"}'
        head = f"""
        import jupyterhub_ext
        c.JupyterHub.ip = "127.0.0.1"
        c.JupyterHub.port = {self.port}
        c.JupyterHub.hub_ip = "127.0.0.1"
        c.JupyterHub.hub_port = {self.hub_port}
        c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{self.proxy_api_port}"
        c.ConfigurableHTTPProxy.pid_file = "{w}/proxy.pid"
        c.JupyterHub.pid_file = "{w}/jupyterhub.pid"
        c.JupyterHub.db_url = "sqlite:///{w}/jupyterhub.sqlite"
        c.JupyterHub.cookie_secret_file = "{w}/cookie_secret"
        c.JupyterHub.authenticator_class = "{authenticator}"
        c.Authenticator.allow_all = True
        c.Authenticator.admin_users = {admins}
        c.JupyterHub.services = [{{"name": "test-admin", "api_token": "{self.token}"}}]
        c.JupyterHub.load_roles = [{{"name": "admin", "services": ["test-admin"]}}]
        c.JupyterHub.cleanup_servers = True
        c.JupyterHub.spawner_class = "{spawner_class}"
        c.DockerSpawner.image = "{self.image}"
        c.DockerSpawner.network_name = "host"
        c.DockerSpawner.prefix = "{self.prefix}"
        c.DockerSpawner.remove = True
        c.Spawner.start_timeout = 90
        c.Spawner.http_timeout = 90
        c.Spawner.default_url = "/lab"
        c.ExtDockerSpawner.volume_set = {{
            "home": {{
                "name": "{self.prefix}-{{username}}-home",
                "mount": "/home/jovyan",
                "description": "Your home directory",
            }},
        }}
        """
        tail = "\njupyterhub_ext.setup(c)\n" if setup else "\n"
        return textwrap.dedent(head) + textwrap.dedent(extra) + tail

    # -- process --------------------------------------------------------------

    def start(self, timeout: float = 60, debug: bool = True) -> Hub:
        """Start the hub (``--debug`` logging unless ``debug=False``, as a deployment runs)."""
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        self.log_fh = open(self.log_file, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(self.config_file)]
            + (["--debug"] if debug else []),
            cwd=self.workdir,
            stdout=self.log_fh,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise HubError(f"hub exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if requests.get(self.url + "/hub/api/", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise HubError(f"hub did not answer in {timeout}s:\n{self.log_tail()}")

    def stop(self, timeout: float = 60) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        # the proxy is the hub's child in its own session; make sure it is gone
        pid_file = self.workdir / "proxy.pid"
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
            except (ProcessLookupError, ValueError):
                pass
        if getattr(self, "log_fh", None):
            self.log_fh.close()

    def kill(self) -> None:
        """Kill the hub without letting it clean up (crash simulation)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def log_text(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def log_tail(self, n: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])

    # -- REST API ---------------------------------------------------------------

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        return self.session.request(method, f"{self.url}/hub/api{path}", **kwargs)

    def create_user(self, name: str, *, admin: bool = False) -> dict:
        r = self.api("POST", f"/users/{name}")
        if r.status_code not in (201, 409):
            raise HubError(f"create user {name}: {r.status_code} {r.text}")
        if admin:
            self.api("PATCH", f"/users/{name}", json={"admin": True}).raise_for_status()
        return self.api("GET", f"/users/{name}").json()

    def user(self, name: str) -> dict:
        r = self.api("GET", f"/users/{name}")
        r.raise_for_status()
        return r.json()

    def server(self, name: str, server_name: str = "") -> dict | None:
        return self.user(name).get("servers", {}).get(server_name)

    def wait_ready(self, name: str, server_name: str = "", timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s = self.server(name, server_name)
            if s and s.get("ready"):
                return s
            if s is None:
                # the spawn failed; the hub's log says why
                u = self.user(name)
                if not u.get("pending") and not u.get("servers"):
                    raise HubError(f"server of {name} is gone:\n{self.log_tail()}")
            time.sleep(0.25)
        raise HubError(f"server of {name} not ready in {timeout}s:\n{self.log_tail()}")

    def wait_stopped(self, name: str, server_name: str = "", timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.server(name, server_name) is None:
                return
            time.sleep(0.25)
        raise HubError(f"server of {name} did not stop:\n{self.log_tail()}")

    def spawn(self, name: str, server_name: str = "", options: dict | None = None) -> dict:
        self.create_user(name)
        path = f"/users/{name}/servers/{server_name}" if server_name else f"/users/{name}/server"
        r = self.api("POST", path, json=options or {})
        if r.status_code not in (201, 202):
            raise HubError(f"spawn {name}: {r.status_code} {r.text}")
        return self.wait_ready(name, server_name)

    def spawn_many(self, names: list[str], timeout: float = 300) -> float:
        """Start several users' servers at the same moment; seconds until all are ready.

        Each POST runs in its own thread: the hub holds a POST open until the
        server is up (up to its slow_spawn_timeout), so POSTs sent one after
        another would start the servers one after another.
        """
        from concurrent.futures import ThreadPoolExecutor

        def one(name: str) -> None:
            r = requests.post(
                f"{self.url}/hub/api/users/{name}/server",
                headers={"Authorization": f"token {self.token}"},
                timeout=timeout,
            )
            if r.status_code not in (201, 202):
                raise HubError(f"spawn {name}: {r.status_code} {r.text}")
            self.wait_ready(name, timeout=timeout)

        t0 = time.perf_counter()
        with ThreadPoolExecutor(len(names)) as pool:
            list(pool.map(one, names))
        return time.perf_counter() - t0

    def stop_server(self, name: str, server_name: str = "") -> None:
        path = f"/users/{name}/servers/{server_name}" if server_name else f"/users/{name}/server"
        r = self.api("DELETE", path)
        if r.status_code not in (202, 204):
            raise HubError(f"stop {name}: {r.status_code} {r.text}")
        self.wait_stopped(name, server_name)

    def token_for(self, name: str, scopes: list[str] | None = None) -> str:
        body: dict[str, Any] = {"note": "test"}
        if scopes is not None:
            body["scopes"] = scopes
        r = self.api("POST", f"/users/{name}/tokens", json=body)
        if r.status_code != 201:
            raise HubError(f"token for {name}: {r.status_code} {r.text}")
        return r.json()["token"]

    def login(self, name: str, password: str = "any-password") -> requests.Session:
        """A cookie-authenticated browser-like session (with the _xsrf cookie)."""
        s = requests.Session()
        r = s.get(f"{self.url}/hub/login", timeout=30)
        r.raise_for_status()
        xsrf = s.cookies.get("_xsrf")
        r = s.post(
            f"{self.url}/hub/login",
            data={"username": name, "password": password, "_xsrf": xsrf},
            allow_redirects=False,
            timeout=30,
        )
        if r.status_code not in (302, 303):
            raise HubError(f"login {name}: {r.status_code} {r.text[:300]}")
        return s

    def container(self, name: str, server_name: str = ""):
        """The docker container of a user's server (found by our owner labels)."""
        client = docker.from_env(version="auto")
        found = client.containers.list(
            all=True,
            filters={
                "label": [
                    f"jupyterhub-ext.owner-name={name}",
                    f"jupyterhub-ext.server-name={server_name}",
                ],
                "name": self.prefix,
            },
        )
        return found[0] if found else None


def run_in(container, cmd: str, user: str | None = None) -> tuple[int, str]:
    res = container.exec_run(["sh", "-c", cmd], user=user or "")
    return res.exit_code, res.output.decode(errors="replace")


def cleanup_prefix(prefix: str) -> None:
    """Remove every container and volume whose name starts with ``prefix``."""
    client = docker.from_env(version="auto")
    for c in client.containers.list(all=True, filters={"name": prefix}):
        if c.name.startswith(prefix):
            c.remove(force=True)
    for v in client.volumes.list():
        if v.name.startswith(prefix):
            try:
                v.remove(force=True)
            except docker.errors.APIError:
                pass


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=1, sort_keys=True)


# -- NativeAuthenticator and volume contents (rename tests) ---------------------


def signup(hub: Hub, name: str, password: str) -> str:
    """Sign up through NativeAuthenticator's own form; returns the page's message."""
    s = requests.Session()
    s.get(f"{hub.url}/hub/signup", timeout=30).raise_for_status()
    r = s.post(
        f"{hub.url}/hub/signup",
        data={
            "username": name,
            "signup_password": password,
            "signup_password_confirmation": password,
            "_xsrf": s.cookies.get("_xsrf"),
        },
        timeout=30,
    )
    r.raise_for_status()
    if "The signup was successful" not in r.text and "sent to the admin" not in r.text:
        raise HubError(f"signup {name} failed: {r.text[:500]}")
    return r.text


def can_login(hub: Hub, name: str, password: str) -> bool:
    try:
        hub.login(name, password)
    except HubError:
        return False
    return True


def volume_manifest(image: str, volume: str) -> dict:
    """jupyterhub_ext.rename.treeverify's manifest of a volume, made in a root helper container."""
    src = (ROOT / "jupyterhub_ext" / "rename" / "treeverify.py").read_text()
    client = docker.from_env(version="auto")
    client.volumes.get(volume)  # raises NotFound: never let the mount create it
    c = client.containers.create(
        image,
        entrypoint=["python3", "-c", src],
        command=["manifest", "/v"],
        user="0:0",
        network_mode="none",
        volumes={volume: {"bind": "/v", "mode": "ro"}},
    )
    try:
        c.start()
        status = c.wait(timeout=300)
        out = c.logs(stdout=True, stderr=False)
        if status["StatusCode"] != 0:
            raise HubError(f"manifest of {volume}: {c.logs().decode(errors='replace')}")
    finally:
        c.remove(force=True)
    return json.loads(out)


def volume_names(prefix: str) -> set[str]:
    client = docker.from_env(version="auto")
    return {v.name for v in client.volumes.list() if v.name.startswith(prefix)}


def wait_for(check, timeout: float = 120, interval: float = 0.5, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise HubError(f"timed out waiting for {what}")


CHROMIUM = "/usr/bin/chromium"
# Debian's Chromium, headless, as root, on a closed network: without the
# background-networking flags it keeps trying (and failing) to reach Google.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def launch_chromium(playwright: Any):
    """A headless Debian Chromium driven by Playwright (no downloaded browser)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
