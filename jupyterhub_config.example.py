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
# With SQLite, each commit of the hub's database waits on its event loop for an
# fsync; on a disk busy with users' writes or a rename's copy one took 425 ms,
# and every page of the hub waited with it (docs/performance.md). WAL mode
# without an fsync per commit removes that wait; a power cut can then lose the
# last commits, never corrupt the file. PostgreSQL avoids the question.
# import sqlalchemy
#
# @sqlalchemy.event.listens_for(sqlalchemy.engine.Engine, "connect")
# def _sqlite_wal(dbapi_conn, _record):
#     if type(dbapi_conn).__module__.startswith("sqlite3"):
#         dbapi_conn.execute("PRAGMA journal_mode=WAL")
#         dbapi_conn.execute("PRAGMA synchronous=NORMAL")
c.JupyterHub.cookie_secret_file = os.environ.get(
    "JUPYTERHUB_COOKIE_SECRET_FILE", "jupyterhub_cookie_secret"
)
c.JupyterHub.cleanup_servers = False  # servers keep running across hub restarts

# Login: NativeAuthenticator (pip install jupyterhub-nativeauthenticator): people
# sign up at /hub/signup and an admin authorizes them at /hub/authorize.
# The demo (scripts/demo.sh) sets JUPYTERHUB_AUTHENTICATOR=dummy: any password.
# OAuth recipes (GitHub, Google, GitLab, generic) are in the docs.
c.JupyterHub.authenticator_class = os.environ.get("JUPYTERHUB_AUTHENTICATOR", "native")
# Admins: your own login name(s), comma separated, in JUPYTERHUB_ADMIN_USERS; no
# name is built in (the hub stops with a message when it is unset). With
# NativeAuthenticator, create each admin's account before the first start:
#   jupyterhub-ext-create-account -f jupyterhub_config.py NAME --password-file FILE
# While sign-up is open the hub refuses to start as long as a name in
# admin_users or allowed_users has no account: whoever signed up first under
# it would own it (docs/security.md, "Admin accounts").
c.Authenticator.admin_users = jupyterhub_ext.admin_users_from_env("JUPYTERHUB_ADMIN_USERS")
c.Authenticator.allow_all = True  # everyone who can log in may use the hub

# --- The spawner: every user in a Docker container ---------------------------
# Coming from DockerSpawner? Change this one line and keep your c.DockerSpawner.*
# settings; docs/switching.md says what each one does here.
c.JupyterHub.spawner_class = "ext-docker"  # jupyterhub_ext.spawner.ExtDockerSpawner
c.ExtDockerSpawner.image = os.environ.get(
    "JUPYTERHUB_SINGLEUSER_IMAGE", "jupyterhub-ext/singleuser"
)
c.ExtDockerSpawner.default_url = "/lab"
# "host": servers share the host's network and get a free port on 127.0.0.1
# (plain DockerSpawner cannot do this). Use a Docker network name otherwise.
c.ExtDockerSpawner.network_name = os.environ.get("JUPYTERHUB_DOCKER_NETWORK", "host")
# Default True (plain DockerSpawner: False); see docs/switching.md.
c.ExtDockerSpawner.remove = True  # fresh container per start; data lives in volumes
# Docker calls run in a pool shared by all users (plain DockerSpawner: 1 thread).
c.ExtDockerSpawner.docker_pool_size = 8
# Seconds the engine has to answer a client's first request (its API version),
# asked in that pool: a hung engine fails spawns with a message, never the hub.
c.ExtDockerSpawner.docker_connect_timeout = 10
# Notice a new server within 0.1 s (JupyterHub's own wait backs off up to 5 s)
# and fail a spawn at once, with the container's exit code and last log lines,
# when its container dies before the server answers. 0 turns this off.
c.ExtDockerSpawner.ready_poll_interval = 0.1

# --- Several hosts: Docker Swarm (docs/deployment/swarm.md) -------------------
# Each server a Swarm service on any node, with the same features. Instead of
# "ext-docker" above (the c.ExtDockerSpawner.* settings here apply to it too):
# c.JupyterHub.spawner_class = "ext-swarm"  # jupyterhub_ext.swarm.spawner.ExtSwarmSpawner
# The engine of a manager node (the hub creates services through it):
# c.ExtSwarmSpawner.client_kwargs = {"base_url": "unix:///var/run/docker.sock"}
# An image reference every node can pull (the hub pulls nothing on Swarm):
# c.ExtSwarmSpawner.image = "10.0.0.11:5000/singleuser:2025-01"
# The attachable overlay network the hub is on too: servers reached by name.
# Or leave it empty and use network_name = "host" (servers on their node's
# network, reached at the node's address).
# c.ExtSwarmSpawner.swarm_network = "jupyterhub-swarm"
# Servers with plain local volumes always start on the node that has them
# (refused, naming the node, while it is down or drained); with no node recorded
# (a first start, a restored hub database) the user's volumes are looked for on
# every node first (one job each, 4 at a time). Their volumes are
# checked on that node against their owner labels before each start (one job
# there, about 0.5 s), and get the entries' owner/group/mode when the node
# creates them. The node's Docker socket the jobs mount:
# c.ExtSwarmSpawner.swarm_node_socket = "/var/run/docker.sock"
# An admin's move of a user's volumes to another node (POST .../move-volumes)
# must copy and verify within this many seconds, else 504 and the originals kept:
# c.ExtSwarmSpawner.swarm_move_timeout = 3600
# GPUs are the generic resource nodes advertise in daemon.json
# (node-generic-resources):
# c.ExtSwarmSpawner.swarm_gpu_resource = "NVIDIA-GPU"
# c.ExtSwarmSpawner.gpu_count = 1  # a number: "all" stops the hub on Swarm
# GPU profiles work on Swarm ("gpus": N is reserved on one node); the scheduler is
# the allocator, so gpu_devices, gpu_sharing and admission_memory_reserve (below)
# stop a Swarm hub at start.
# Services cannot be privileged: a docker-privileged group stops the hub.
# c.ExtSwarmSpawner.docker_privileged_group = ""

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

# --- Shared and archive storage (docs/features/storage.md) --------------------
# Network shares and a read-only union archive are entries of the volume set.
# A secret in driver options is a placeholder, ${env:NAME} or ${file:/path},
# resolved only when the volume is created; never logged or shown.
# c.ExtDockerSpawner.volume_set["nas"] = {
#     "name": "jupyterhub-nas-projects",
#     "mount": "/srv/projects",
#     "description": "Project share on the department NAS.",
#     "scope": "shared",  # one volume for everybody; never resettable
#     "driver_opts": {
#         "type": "cifs",
#         "device": "//nas.example.org/projects",
#         "o": "addr=nas.example.org,vers=3.0,uid=1000,gid=100,"
#         "username=lab,password=${env:NAS_PASSWORD}",
#     },
# }
# A plain local shared volume is made writable for the image's user when it is
# created: owner 1000, group 100, mode 2775 unless "owner"/"group"/"mode" say
# otherwise (network shares: set ownership on the file server instead).
# c.ExtDockerSpawner.volume_set["team"] = {
#     "name": "jupyterhub-team",
#     "mount": "/srv/team",
#     "scope": "shared",
#     "mode": "2770",  # members of group 100 only
# }
# One read-only tree from several host directories; for a path present in
# several, the copy in the first directory listed wins. Missing directories
# stop the hub at start.
# c.ExtDockerSpawner.volume_set["archive"] = {
#     "mount": "/srv/archive",
#     "description": "The archive, newest copy of every dataset (read-only).",
#     "union": ["/mnt/archive/updates", "/mnt/archive/main"],
# }
# Deleting a user (or a named server) in JupyterHub removes their own volumes.
# Off by default: it deletes their data for good. Shared volumes: never.
c.ExtDockerSpawner.remove_volumes_on_delete = False
# Every volume and container carries its owner's labels, and a server only
# ever gets its own. Volumes made by plain DockerSpawner before you switched
# have no labels: set this while they are in use (see docs/security.md).
c.ExtDockerSpawner.adopt_unlabelled = False
# What server options (user_options) may change through your
# c.Spawner.apply_user_options hook; any other trait it changes is refused
# with a 403 (a careless hook cannot hand out the host). Default: nothing.
c.ExtDockerSpawner.user_options_traits = []

# --- Notification broadcast --------------------------------------------------
# /hub/notifications (page), /hub/api/notifications/* (API) and the
# jupyterhub-ext-notify CLI show a message in every running JupyterLab
# (images need jupyterlab-notifications-extension). Admins may send; delegate
# by adding people to the group "jupyterhub-ext-broadcasters" (admin page).
# Delivery uses a hub-managed service holding only access:servers, with one
# short-lived token per target server, good for that server only and deleted
# after the broadcast (see docs/features/notifications.md).
c.NotificationsConfig.max_length = 140  # characters per message
c.NotificationsConfig.max_recipients = 1000  # entries in a chosen-recipients list
c.NotificationsConfig.concurrency = 20  # servers contacted at once
c.NotificationsConfig.timeout = 10  # seconds each server gets to answer
c.NotificationsConfig.default_auto_close = 5  # page default; 0 = stay until dismissed
# Broadcast history (JSON lines); keep it next to the hub database, on persistent storage.
c.NotificationsConfig.history_path = os.environ.get(
    "JUPYTERHUB_EXT_NOTIFICATIONS_HISTORY", "jupyterhub_ext_notifications.jsonl"
)
c.NotificationsConfig.history_size = 200

# --- Spawn profiles (docs/features/profiles.md) -----------------------------
# A menu on the spawn page; "groups" limits who sees a profile (empty: everyone).
# Checked at hub start: unknown keys, two defaults, images missing on the engine.
# c.ExtDockerSpawner.profiles = [
#     {"slug": "small", "display_name": "Small", "description": "Notebooks, teaching",
#      "cpu_limit": 1, "mem_limit": "2G", "default": True},
#     {"slug": "large", "display_name": "Large", "description": "Big data in memory",
#      "cpu_limit": 4, "mem_limit": "16G", "mem_guarantee": "8G"},
#     {"slug": "gpu", "display_name": "1 GPU", "description": "One GPU of its own",
#      "gpus": 1, "groups": ["gpu"]},
# ]
# The host's GPUs: each GPU server gets free ones of its own (read from container labels).
# c.ExtDockerSpawner.gpu_devices = ["0", "1", "2", "3"]  # or UUIDs from nvidia-smi -L
# c.ExtDockerSpawner.gpu_sharing = 1  # servers per GPU; 1: refuse when none is free
# Refuse spawns whose mem_guarantee would not fit in the host's memory less this reserve.
# c.ExtDockerSpawner.admission_memory_reserve = "4G"

# --- GPUs (docs/features/gpu.md) ---------------------------------------------
# "auto": GPUs where the Docker engine reports an nvidia runtime or CDI GPUs
# (one `docker info` call, cached; no container, no pull). "on": always ask;
# a host without GPUs fails the spawn with a message saying what to change.
c.ExtDockerSpawner.gpu_mode = "auto"
c.ExtDockerSpawner.gpu_count = "all"  # or a number; gpu_device_ids = ["0", "1"] wins
c.ExtDockerSpawner.gpu_capabilities = ["compute", "utility"]
# Only members of these hub groups get GPUs (empty: everyone).
# c.ExtDockerSpawner.gpu_groups = ["gpu-users"]
# c.ExtDockerSpawner.gpu_detect_interval = 300  # seconds an engine's answer is reused
# Hosts where `docker info` is not enough: a probe container (image must be local,
# it is never pulled).
# c.ExtDockerSpawner.gpu_probe_image = "nvidia/cuda:12.4.1-base-ubuntu22.04"

# --- Docker access by group (docs/features/docker-access.md) ------------------
# Members of "docker-sock" get the host's Docker socket - that is ROOT ON THE
# DOCKER HOST. Members of "docker-privileged" run privileged containers. Add
# people on the admin page (Groups); a restart of their server applies it.
# The groups are created at hub start and re-created if deleted; "" disables.
c.ExtDockerSpawner.docker_sock_group = "docker-sock"
c.ExtDockerSpawner.docker_privileged_group = "docker-privileged"
c.ExtDockerSpawner.docker_sock_host_path = os.environ.get(
    "JUPYTERHUB_DOCKER_SOCK", "/var/run/docker.sock"
)
c.ExtDockerSpawner.docker_sock_container_path = "/var/run/docker.sock"
# c.ExtDockerSpawner.docker_sock_gid = "auto"  # the socket's group, for the lab user

# --- Self-service: Restart and Manage volumes on the home page ---------------
# Nothing to switch on: users restart their own server and reset their own
# resettable volumes (see volume_set above); admins may do it for anyone.
# Guide and API: docs/features/self-service.md.
# Named servers get the same buttons on their rows:
# c.JupyterHub.allow_named_servers = True
# How long a restart request waits for the new server before answering 202
# (the page then follows the spawn); JupyterHub's default is 10 s:
# c.JupyterHub.tornado_settings = {"slow_spawn_timeout": 10}
# A helpdesk group that may reset volumes and restart servers of everyone,
# without being admins:
# c.JupyterHub.load_roles = [
#     {
#         "name": "helpdesk",
#         "groups": ["helpdesk"],
#         "scopes": ["custom:jupyterhub-ext:manage-volumes", "servers", "read:users"],
#     },
# ]

# --- Rename users with their login and data (docs/features/rename.md) -------
# Admins (scope admin:users) rename at /hub/rename, or with
# PATCH /hub/api/users/{name}/rename {"new_name": "..."}. The user's
# NativeAuthenticator password, spawner state and every per-user volume move to
# the new name; volumes are copied, verified, and only then the old ones removed.
# Renames through JupyterHub's own admin page keep the login and data as well.
# The copy runs in helper containers of the single-user image unless set here:
# c.ExtDockerSpawner.helper_image = "jupyterhub-ext/singleuser"
# A rename holds the new name until it ends; renaming away from a name listed in
# admin_users / allowed_users / load_roles / load_groups is refused (409).
# Past this many seconds of copying a rename is rolled back; admins can cancel
# one with DELETE /hub/api/users/{name}/rename or on the page.
# c.ExtDockerSpawner.rename_timeout = 6 * 3600

# --- Usage: servers page and Prometheus metrics (docs/features/usage.md) ----
# /hub/servers and GET /hub/api/usage/servers show every running server's CPU,
# memory, GPUs and volume sizes to admins and to members of the group
# jupyterhub-ext-usage-readers (scope custom:jupyterhub-ext:read-usage).
# jupyterhub_ext_* metrics appear on JupyterHub's /hub/metrics (read:metrics);
# a Grafana dashboard is deploy/grafana/jupyterhub-ext-usage.json.
# The numbers come from one periodic background scan, never per request:
# c.UsageConfig.scan_interval = 15  # seconds between server scans
# c.UsageConfig.volume_scan_interval = 300  # seconds between volume-size scans
# (on Swarm each scan also runs one `docker system df` job per node with volumes)
# c.UsageConfig.max_concurrent_calls = 8  # the scan's own threads
# c.UsageConfig.call_timeout = 10
# c.UsageConfig.large_volume_bytes = 1024**3  # "stopped users holding disk"
# Volume quotas (docs/features/quotas.md): per volume-set entry, measured by
# the same scan. Over a limit: a warning on the home page and once in JupyterLab;
# "refuse" also refuses the next start over the hard limit (until a reset).
# c.ExtDockerSpawner.volume_set["home"]["soft_limit"] = "8G"
# c.ExtDockerSpawner.volume_set["home"]["hard_limit"] = "10G"
# c.ExtDockerSpawner.volume_set["home"]["on_hard_limit"] = "refuse"  # or "warn"

# --- Idle culling with a warning (docs/features/culling.md) ------------------
# Stops servers idle for `timeout` seconds; `warning` seconds before, the user
# gets a notification in JupyterLab and a Keep running button on the home page.
# Use it instead of jupyterhub-idle-culler, not beside it.
# c.CullerConfig.enabled = True
# c.CullerConfig.timeout = 3600  # seconds idle (0: never)
# c.CullerConfig.warning = 600  # warn this long before the stop
# c.CullerConfig.extension = 3600  # what one "Keep running" adds
# c.CullerConfig.max_extensions = 2  # per start of a server
# c.CullerConfig.interval = 60  # seconds between checks
# c.CullerConfig.concurrency = 10  # warnings and stops at the same time
# c.CullerConfig.profile_timeouts = {"gpu": 1800}  # per spawn profile slug
# extensions and cull notes, kept across hub restarts (was notes_path)
# c.CullerConfig.state_path = "jupyterhub_ext_culler.json"

# --- Register jupyterhub_ext (handlers, templates, scopes). Keep it last. ---
jupyterhub_ext.setup(c)
