"""Tornado handlers for ``c.JupyterHub.extra_handlers`` (added by ``jupyterhub_ext.setup``)."""

from __future__ import annotations

from tornado.web import StaticFileHandler

from jupyterhub_ext.handlers import notifications, rename, usage
from jupyterhub_ext.paths import static_path


class StaticHandler(StaticFileHandler):
    """Our pages' script. Revalidated on each load (ETag), so an upgrade is seen at once."""

    def set_extra_headers(self, path: str) -> None:
        self.set_header("Cache-Control", "no-cache")


def default_handlers() -> list[tuple]:
    """Every route we serve, relative to the hub prefix (/hub)."""
    from jupyterhub_ext.handlers.culling import KeepRunningAPIHandler
    from jupyterhub_ext.handlers.move import MoveVolumesAPIHandler
    from jupyterhub_ext.handlers.profiles import GrantsAPIHandler
    from jupyterhub_ext.handlers.restart import RestartServerAPIHandler
    from jupyterhub_ext.handlers.volumes import ManageVolumesAPIHandler

    routes: list[tuple] = [
        # self-service (seed 003 shapes; named servers add /servers/{server})
        (r"/api/users/([^/]+)/restart-server", RestartServerAPIHandler),
        (r"/api/users/([^/]+)/servers/([^/]+)/restart-server", RestartServerAPIHandler),
        (r"/api/users/([^/]+)/manage-volumes", ManageVolumesAPIHandler),
        (r"/api/users/([^/]+)/servers/([^/]+)/manage-volumes", ManageVolumesAPIHandler),
        # profiles: what each server gets (docs/features/profiles.md)
        (r"/api/users/([^/]+)/grants", GrantsAPIHandler),
        # idle culling: keep a server running (docs/features/culling.md)
        (r"/api/users/([^/]+)/keep-running", KeepRunningAPIHandler),
        (r"/api/users/([^/]+)/servers/([^/]+)/keep-running", KeepRunningAPIHandler),
        # Docker Swarm: move a user's volumes to another node (docs/deployment/swarm.md)
        (r"/api/users/([^/]+)/move-volumes", MoveVolumesAPIHandler),
        (r"/api/users/([^/]+)/servers/([^/]+)/move-volumes", MoveVolumesAPIHandler),
    ]
    routes.extend(notifications.default_handlers())
    routes.extend(rename.handlers())
    routes.extend(usage.default_handlers())
    routes.append((r"/jupyterhub-ext/static/(.*)", StaticHandler, {"path": static_path()}))
    return routes
