"""Our custom RBAC scopes and the roles that carry them.

Authorization is always a scope check (``needs_scope`` / ``has_scope``), never
``user.admin``: a token only gets what its scopes allow, whoever owns it.

- ``custom:jupyterhub-ext:manage-volumes`` (filterable by user): list and reset
  a user's volumes. Every user has it on themself; the ``jupyterhub-ext-admin``
  role has it on everyone.
- ``custom:jupyterhub-ext:broadcast``: send notifications to running servers.
  Held by ``jupyterhub-ext-admin`` and by the ``jupyterhub-ext-broadcast`` role,
  which members of the ``jupyterhub-ext-broadcasters`` group get (delegation
  is adding someone to that group on the admin page).

- ``custom:jupyterhub-ext:read-usage``: see every running server's resource
  use and every user's volume sizes (``/hub/servers`` and its API). Held by
  ``jupyterhub-ext-admin`` and by the ``jupyterhub-ext-read-usage`` role,
  which members of the ``jupyterhub-ext-usage-readers`` group get (e.g. a
  helpdesk). It grants no action on servers.

The ``jupyterhub-ext-admin`` role goes to ``c.Authenticator.admin_users`` and
to members of the ``jupyterhub-ext-admins`` group, so admins made later on the
admin page are added to that group to get it.
"""

from __future__ import annotations

from typing import Any

from jupyterhub_ext.configutil import configured

MANAGE_VOLUMES = "custom:jupyterhub-ext:manage-volumes"
BROADCAST = "custom:jupyterhub-ext:broadcast"
READ_USAGE = "custom:jupyterhub-ext:read-usage"

CUSTOM_SCOPES = {
    MANAGE_VOLUMES: {"description": "List and reset (wipe) a user's volumes."},
    BROADCAST: {"description": "Send notifications to running single-user servers."},
    READ_USAGE: {
        "description": "See every running server's resource use and every user's volume sizes."
    },
}

ADMIN_ROLE = "jupyterhub-ext-admin"
ADMIN_GROUP = "jupyterhub-ext-admins"
BROADCAST_ROLE = "jupyterhub-ext-broadcast"
BROADCAST_GROUP = "jupyterhub-ext-broadcasters"
USAGE_ROLE = "jupyterhub-ext-read-usage"
USAGE_GROUP = "jupyterhub-ext-usage-readers"


def user_scope(scope: str, user_name: str) -> str:
    """A scope filtered to one user, as JupyterHub expands ``!user``."""
    return f"{scope}!user={user_name}"


def configure(c: Any, *, admin_users: set[str]) -> None:
    """Define our scopes and roles in a hub's config (called by ``setup``)."""
    scopes = dict(configured(c, "JupyterHub", "custom_scopes", {}))
    scopes.update(CUSTOM_SCOPES)
    c.JupyterHub.custom_scopes = scopes

    extra = set(configured(c, "JupyterHub", "extra_user_scopes", set()))
    extra.add(f"{MANAGE_VOLUMES}!user")
    c.JupyterHub.extra_user_scopes = extra

    roles = list(configured(c, "JupyterHub", "load_roles", []))
    names = {r["name"] for r in roles}
    if ADMIN_ROLE not in names:
        roles.append(
            {
                "name": ADMIN_ROLE,
                "description": "jupyterhub_ext administration on every user",
                "scopes": [MANAGE_VOLUMES, BROADCAST, READ_USAGE],
                "users": sorted(admin_users),
                "groups": [ADMIN_GROUP],
            }
        )
    if BROADCAST_ROLE not in names:
        roles.append(
            {
                "name": BROADCAST_ROLE,
                "description": "Send notifications to every running server",
                "scopes": [BROADCAST, "read:servers", "list:users"],
                "groups": [BROADCAST_GROUP],
            }
        )
    if USAGE_ROLE not in names:
        roles.append(
            {
                "name": USAGE_ROLE,
                "description": "See resource use of every server and volume (servers page)",
                "scopes": [READ_USAGE],
                "groups": [USAGE_GROUP],
            }
        )
    c.JupyterHub.load_roles = roles
