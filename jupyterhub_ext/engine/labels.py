"""Every Docker label we set, in one place: the names other tools and admins filter on.

``jupyterhub-ext.managed=true`` marks every object we create; the owner
labels are what :mod:`jupyterhub_ext.engine.ownership` checks before any
destructive call.
"""

from __future__ import annotations

LABEL_PREFIX = "jupyterhub-ext."
LABEL_MANAGED = LABEL_PREFIX + "managed"
# volumes
LABEL_KEY = LABEL_PREFIX + "volume-key"
LABEL_DESCRIPTION = LABEL_PREFIX + "description"
LABEL_SCOPE = LABEL_PREFIX + "scope"
LABEL_PERMS = LABEL_PREFIX + "volume-permissions"
# owners (volumes and containers)
LABEL_OWNER_ID = LABEL_PREFIX + "owner-id"
LABEL_OWNER_NAME = LABEL_PREFIX + "owner-name"
LABEL_SERVER_NAME = LABEL_PREFIX + "server-name"
LABEL_OWNER_CREATED = LABEL_PREFIX + "owner-created"
# containers: what a server was given
LABEL_PROFILE = LABEL_PREFIX + "profile"
LABEL_GPU_DEVICES = LABEL_PREFIX + "gpu-devices"
LABEL_MEM_GUARANTEE = LABEL_PREFIX + "mem-guarantee"
LABEL_GRANTS = LABEL_PREFIX + "grants"
# helper containers and what they make
LABEL_HELPER = LABEL_PREFIX + "helper"
LABEL_RENAME_JOB = LABEL_PREFIX + "rename-job"
LABEL_GPU_PROBE = LABEL_PREFIX + "gpu-probe"
# on a volume a Swarm node creates from a service mount: the start that made it
LABEL_CREATED_BY = LABEL_PREFIX + "created-by-start"
# on a plain local volume of a Swarm server: the node that holds it. A service
# mount carries Swarm's templates ({{.Node.ID}}), which the node's agent
# expands when it creates the volume; a move or rename writes the values
NODE_ID_TEMPLATE = "{{.Node.ID}}"
NODE_HOSTNAME_TEMPLATE = "{{.Node.Hostname}}"
LABEL_NODE_ID = LABEL_PREFIX + "node-id"
LABEL_NODE_HOSTNAME = LABEL_PREFIX + "node-hostname"
