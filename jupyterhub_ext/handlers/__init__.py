"""Tornado handlers for ``c.JupyterHub.extra_handlers`` (added by ``jupyterhub_ext.setup``)."""

from __future__ import annotations

from . import notifications, rename


def default_handlers() -> list[tuple]:
    """Every route we serve, relative to the hub prefix (/hub)."""
    from .profiles import GrantsAPIHandler
    from .restart import RestartServerAPIHandler
    from .volumes import ManageVolumesAPIHandler

    routes: list[tuple] = [
        # self-service (seed 003 shapes; named servers add /servers/{server})
        (r"/api/users/([^/]+)/restart-server", RestartServerAPIHandler),
        (r"/api/users/([^/]+)/servers/([^/]+)/restart-server", RestartServerAPIHandler),
        (r"/api/users/([^/]+)/manage-volumes", ManageVolumesAPIHandler),
        (r"/api/users/([^/]+)/servers/([^/]+)/manage-volumes", ManageVolumesAPIHandler),
        # profiles: what each server gets (docs/features/profiles.md)
        (r"/api/users/([^/]+)/grants", GrantsAPIHandler),
    ]
    routes.extend(notifications.default_handlers())
    routes.extend(rename.handlers())
    return routes
