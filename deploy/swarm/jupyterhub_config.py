# jupyterhub_config.py for the Docker Swarm deployment (deploy/swarm/docker-stack.yml).
#
# The hub runs as a service of the stack on a manager, with that manager's
# Docker socket, and starts each user's server as a Swarm service on the
# attachable overlay network "jupyterhub-swarm", on whichever node Swarm picks
# (then always that node, where the user's volumes are). Secrets and site
# settings come from the environment (deploy/swarm/.env), the login method
# from auth.py next to this file (a copy of one of docs/recipes/*.py).
# See docs/deployment/swarm.md; a test loads this file into a JupyterHub application.
import logging
import logging.handlers
import os

import jupyterhub_ext

c = get_config()  # noqa: F821 - provided by JupyterHub when it loads this file

HERE = os.path.dirname(os.path.abspath(__file__))
# The hub's persistent state: database, cookie secret, audit log (volume hub-data).
DATA = os.environ.get("JUPYTERHUB_DATA_DIR", "/srv/jupyterhub/data")

# --- The hub, behind Traefik -------------------------------------------------
c.JupyterHub.bind_url = "http://0.0.0.0:8000"
# Servers reach the hub's API as http://hub:8081 on the overlay network
# ("hub" is the hub service's alias there; it resolves on every node).
c.JupyterHub.hub_bind_url = "http://0.0.0.0:8081"
c.JupyterHub.hub_connect_url = os.environ.get("JUPYTERHUB_CONNECT_URL", "http://hub:8081")
c.JupyterHub.db_url = f"sqlite:///{DATA}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = f"{DATA}/jupyterhub_cookie_secret"
# Servers keep running while the hub restarts (upgrades, a new CONFIG_VERSION).
c.JupyterHub.cleanup_servers = False
# --- end of the hub section ---

# --- Single-user servers: one Swarm service each -------------------------------
c.JupyterHub.spawner_class = "ext-swarm"  # jupyterhub_ext.swarm.spawner.ExtSwarmSpawner
# The hub talks to the manager it runs on (the socket the stack mounts).
c.ExtSwarmSpawner.client_kwargs = {"base_url": "unix:///var/run/docker.sock"}
# A reference every node can pull, e.g. 10.0.0.11:5000/singleuser:2025-01 (the
# stack's registry); the hub pulls nothing itself (pull_policy "skip" on Swarm).
c.ExtSwarmSpawner.image = os.environ["JUPYTERHUB_SINGLEUSER_IMAGE"]
# The overlay network of the stack: the hub reaches each server by its service
# name (endpoint mode dnsrr), on any node.
c.ExtSwarmSpawner.swarm_network = os.environ.get("JUPYTERHUB_SWARM_NETWORK", "jupyterhub-swarm")
c.ExtSwarmSpawner.default_url = "/lab"
if os.environ.get("JUPYTERHUB_MEM_LIMIT"):
    c.ExtSwarmSpawner.mem_limit = os.environ["JUPYTERHUB_MEM_LIMIT"]  # e.g. "8G"
if os.environ.get("JUPYTERHUB_CPU_LIMIT"):
    c.ExtSwarmSpawner.cpu_limit = float(os.environ["JUPYTERHUB_CPU_LIMIT"])  # e.g. 2
# Plain local volumes live on the node where the server first ran; later starts
# go to that node (and fail with a message while it is down or drained).
c.ExtSwarmSpawner.volume_set = {
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
# GPUs: nodes advertise them as the generic resource NVIDIA-GPU; a GPU server
# reserves gpu_count of them. "auto": on when some node advertises GPUs.
c.ExtSwarmSpawner.gpu_mode = os.environ.get("JUPYTERHUB_GPU_MODE", "auto")
c.ExtSwarmSpawner.gpu_count = 1
c.ExtSwarmSpawner.gpu_groups = ["gpu"]  # only members of the hub group "gpu" get one
# On a GPU node whose default runtime is nvidia, an image that sets
# NVIDIA_VISIBLE_DEVICES=all would give CPU-only servers every GPU of the node;
# "void" hides them. GPU servers get theirs from DOCKER_RESOURCE_NVIDIA-GPU,
# which the runtime reads first (swarm-resource in its config.toml).
c.ExtSwarmSpawner.environment = {"NVIDIA_VISIBLE_DEVICES": "void"}
# A docker-sock member would get the socket of the node their server runs on:
# root there, and control of the whole swarm on a manager. Off here.
c.ExtSwarmSpawner.docker_sock_group = ""
# --- end of the single-user section ---

# --- Login: auth.py, a copy of one of docs/recipes/*.py -------------------------
auth_file = os.environ.get("JUPYTERHUB_AUTH_CONFIG", os.path.join(HERE, "auth.py"))
if not os.path.isfile(auth_file):
    raise SystemExit(
        f"No login method configured: {auth_file} is missing (or is a directory). "
        "Copy a login recipe next to docker-stack.yml, e.g. "
        "`cp docs/recipes/native-admin-approval.py deploy/swarm/auth.py`, then deploy again."
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
