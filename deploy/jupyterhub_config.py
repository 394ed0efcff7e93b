# jupyterhub_config.py for the Docker Compose deployment (deploy/docker-compose.yml).
#
# The hub runs in a container behind Traefik; user containers run on the
# internal network "jupyterhub-users". Secrets and site settings come from the
# environment (deploy/.env), the login method from auth.py next to this file
# (a copy of one of docs/recipes/*.py). The docs include this file section by
# section; a test loads it into a JupyterHub application.
import logging
import logging.handlers
import os

import jupyterhub_ext

c = get_config()  # noqa: F821 - provided by JupyterHub when it loads this file

HERE = os.path.dirname(os.path.abspath(__file__))
# The hub's persistent state: database, cookie secret, audit log (volume hub-data).
DATA = os.environ.get("JUPYTERHUB_DATA_DIR", "/srv/jupyterhub/data")

# --- The hub, behind Traefik -------------------------------------------------
# Traefik terminates TLS and forwards to the proxy on port 8000.
c.JupyterHub.bind_url = "http://0.0.0.0:8000"
# The hub's own API: user containers reach it as http://hub:8081 on the
# users network ("hub" is the hub container's alias there).
c.JupyterHub.hub_bind_url = "http://0.0.0.0:8081"
c.JupyterHub.hub_connect_url = os.environ.get("JUPYTERHUB_CONNECT_URL", "http://hub:8081")
c.JupyterHub.db_url = f"sqlite:///{DATA}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = f"{DATA}/jupyterhub_cookie_secret"
# User servers keep running while the hub container restarts (upgrades).
c.JupyterHub.cleanup_servers = False
# --- end of the hub section ---

# --- Single-user servers -------------------------------------------------------
c.JupyterHub.spawner_class = "ext-docker"
c.ExtDockerSpawner.image = os.environ["JUPYTERHUB_SINGLEUSER_IMAGE"]
c.ExtDockerSpawner.network_name = os.environ.get("JUPYTERHUB_DOCKER_NETWORK", "jupyterhub-users")
c.ExtDockerSpawner.use_internal_ip = True
c.ExtDockerSpawner.default_url = "/lab"
c.ExtDockerSpawner.remove = True
if os.environ.get("JUPYTERHUB_MEM_LIMIT"):
    c.ExtDockerSpawner.mem_limit = os.environ["JUPYTERHUB_MEM_LIMIT"]  # e.g. "8G"
if os.environ.get("JUPYTERHUB_CPU_LIMIT"):
    c.ExtDockerSpawner.cpu_limit = float(os.environ["JUPYTERHUB_CPU_LIMIT"])  # e.g. 2
c.ExtDockerSpawner.volume_set = {
    "home": {
        "name": "jupyterhub-user-{username}",
        "mount": "/home/jovyan",
        "description": "Your home directory: notebooks, settings, installed packages.",
    },
    "cache": {
        "name": "jupyterhub-user-{username}-cache",
        "mount": "/home/jovyan/.cache",
        "description": "Caches (pip, conda, ...). Safe to reset.",
    },
}
# --- end of the single-user section ---

# --- Login: auth.py, a copy of one of docs/recipes/*.py -------------------------
auth_file = os.environ.get("JUPYTERHUB_AUTH_CONFIG", os.path.join(HERE, "auth.py"))
if not os.path.isfile(auth_file):
    raise SystemExit(
        f"No login method configured: {auth_file} is missing (or is a directory). "
        "Copy a login recipe next to docker-compose.yml, e.g. "
        "`cp docs/recipes/native-admin-approval.py deploy/auth.py`, then start again."
    )
load_subconfig(auth_file)  # noqa: F821 - provided by JupyterHub when it loads this file
# --- end of the login section ---

# --- Idle culling, inside the hub (docs/features/culling.md) --------------------
# Servers idle for JUPYTERHUB_IDLE_TIMEOUT seconds (default one hour; 0: never)
# are stopped; JUPYTERHUB_IDLE_WARNING seconds before (default a quarter of
# the timeout, at most 10 minutes) the user gets a notification in JupyterLab
# and a Keep running button on the home page, which adds
# JUPYTERHUB_IDLE_EXTENSION seconds (default one hour) up to
# JUPYTERHUB_IDLE_MAX_EXTENSIONS times per start (default 2). Only servers
# stop; users and their volumes stay. No separate culler service and no
# token that can stop every server.
idle_timeout = int(os.environ.get("JUPYTERHUB_IDLE_TIMEOUT", "3600"))
c.CullerConfig.enabled = idle_timeout > 0
c.CullerConfig.timeout = idle_timeout
c.CullerConfig.warning = int(
    os.environ.get("JUPYTERHUB_IDLE_WARNING", str(min(600, idle_timeout // 4)))
)
c.CullerConfig.extension = int(os.environ.get("JUPYTERHUB_IDLE_EXTENSION", "3600"))
c.CullerConfig.max_extensions = int(os.environ.get("JUPYTERHUB_IDLE_MAX_EXTENSIONS", "2"))
# extensions and "stopped for inactivity" notes survive hub restarts
c.CullerConfig.state_path = f"{DATA}/culler.json"
# --- end of the idle culling section ---

# --- Audit log: jupyterhub_ext's audit lines in a file of their own --------------
# One line per user-visible action (who, action, on whom, result). The file is
# reopened when logrotate moves it (WatchedFileHandler).
audit_file = os.environ.get("JUPYTERHUB_AUDIT_LOG", f"{DATA}/audit.log")
if audit_file:
    audit_handler = logging.handlers.WatchedFileHandler(audit_file, encoding="utf-8")
    audit_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    audit_logger = logging.getLogger("jupyterhub_ext.audit")
    audit_logger.setLevel(logging.INFO)
    audit_logger.addHandler(audit_handler)
# --- end of the audit log section ---

# --- Register jupyterhub_ext (handlers, templates, scopes). Keep it last. ---
jupyterhub_ext.setup(c)
