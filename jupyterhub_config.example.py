# jupyterhub_config.example.py - a commented example of every jupyterhub_ext feature.
#
# Copy it to jupyterhub_config.py and adapt. Secrets come from the environment,
# never from this file. The demo hub (scripts/demo.sh) runs with this file.
import os

import jupyterhub_ext

c = get_config()  # noqa: F821 - provided by JupyterHub when it loads this file

# --- The hub ---------------------------------------------------------------
c.JupyterHub.bind_url = os.environ.get("JUPYTERHUB_BIND_URL", "http://127.0.0.1:8000")
c.JupyterHub.hub_ip = os.environ.get("JUPYTERHUB_HUB_IP", "127.0.0.1")
c.JupyterHub.db_url = os.environ.get("JUPYTERHUB_DB_URL", "sqlite:///jupyterhub.sqlite")
c.JupyterHub.cookie_secret_file = os.environ.get(
    "JUPYTERHUB_COOKIE_SECRET_FILE", "jupyterhub_cookie_secret"
)
c.JupyterHub.cleanup_servers = False  # servers keep running across hub restarts

# Login: the demo accepts any password. In production use NativeAuthenticator or
# OAuth (see docs/auth.md).
c.JupyterHub.authenticator_class = os.environ.get("JUPYTERHUB_AUTHENTICATOR", "dummy")
c.Authenticator.admin_users = {"admin"}
c.Authenticator.allow_all = True

# --- The spawner: every user in a Docker container ---------------------------
c.JupyterHub.spawner_class = "ext-docker"  # jupyterhub_ext.spawner.ExtDockerSpawner
c.ExtDockerSpawner.image = os.environ.get(
    "JUPYTERHUB_SINGLEUSER_IMAGE", "jupyterhub-ext/singleuser"
)
c.ExtDockerSpawner.default_url = "/lab"
# "host": servers share the host's network and get a free port on 127.0.0.1
# (plain DockerSpawner cannot do this). Use a Docker network name otherwise.
c.ExtDockerSpawner.network_name = os.environ.get("JUPYTERHUB_DOCKER_NETWORK", "host")
c.ExtDockerSpawner.remove = True  # fresh container per start; data lives in volumes
# Docker calls run in a pool shared by all users (plain DockerSpawner: 1 thread).
c.ExtDockerSpawner.docker_pool_size = 8

# --- Volume sets -------------------------------------------------------------
# Every server gets these volumes. {username} is escaped for Docker; add
# {servername} to give each named server its own volume. Users can reset the
# volumes marked resettable from the home page (when their server is stopped).
c.ExtDockerSpawner.volume_set = {
    "home": {
        "name": "jupyterhub-user-{username}",
        "mount": "/home/jovyan",
        "description": "Your home directory: notebooks, settings, installed packages.",
        "resettable": True,
    },
    "cache": {
        "name": "jupyterhub-user-{username}-cache",
        "mount": "/home/jovyan/.cache",
        "description": "Caches (pip, conda, ...). Safe to reset.",
        "resettable": True,
    },
}

# --- Rename users with their login and data (docs/features/rename.md) -------
# Admins (scope admin:users) rename at /hub/rename, or with
# PATCH /hub/api/users/{name}/rename {"new_name": "..."}. The user's
# NativeAuthenticator password, spawner state and every per-user volume move to
# the new name; volumes are copied, verified, and only then the old ones removed.
# Renames through JupyterHub's own admin page keep the login and data as well.
# The copy runs in helper containers of the single-user image unless set here:
# c.ExtDockerSpawner.helper_image = "jupyterhub-ext/singleuser"

# --- Register jupyterhub_ext (handlers, templates, scopes). Keep it last. ---
jupyterhub_ext.setup(c)
