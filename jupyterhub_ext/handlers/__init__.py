"""Tornado handlers for ``c.JupyterHub.extra_handlers`` (added by ``jupyterhub_ext.setup``)."""

from __future__ import annotations

from . import notifications, profiles, rename


def default_handlers() -> list[tuple]:
    """Every route we serve, relative to the hub prefix (/hub)."""
    from .restart import RestartServerAPIHandler
    from .volumes import ManageVolumesAPIHandler

    routes: list[tuple] = [
        # self-service (seed 003 shapes; named servers add /servers/{server})
        (r"/api/users/([^/]+)/restart-server", RestartServerAPIHandler),
        (r"/api/users/([^/]+)/servers/([^/]+)/restart-server", RestartServerAPIHandler),
        (r"/api/users/([^/]+)/manage-volumes", ManageVolumesAPIHandler),
        (r"/api/users/([^/]+)/servers/([^/]+)/manage-volumes", ManageVolumesAPIHandler),
    ]
    routes.extend(notifications.default_handlers())
    routes.extend(rename.handlers())
    routes.extend(profiles.handlers())
    return routes
