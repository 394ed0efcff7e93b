"""The servers page ``/hub/servers`` and its JSON API ``/hub/api/usage/servers``.

Both need ``custom:jupyterhub-ext:read-usage`` (admins have it; delegate it
with the ``jupyterhub-ext-usage-readers`` group). Both only read the last
background scan (:mod:`jupyterhub_ext.usage.scan`): no Docker call per request.
"""

from __future__ import annotations

from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.handlers import BaseHandler
from tornado import web

from jupyterhub_ext.handlers._common import needs_custom_scope
from jupyterhub_ext.scopes import READ_USAGE
from jupyterhub_ext.usage import scan

FORBIDDEN = f"Seeing resource use needs the {READ_USAGE} scope."


def _config(handler: web.RequestHandler) -> scan.UsageConfig:
    cfg = handler.settings.get("jupyterhub_ext_usage_config")
    if cfg is None:
        cfg = handler.settings["jupyterhub_ext_usage_config"] = scan.UsageConfig(
            config=handler.settings.get("config")
        )
    return cfg


needs_read_usage = needs_custom_scope(READ_USAGE, message=FORBIDDEN)


class _UsageMixin:
    def usage_json(self) -> bytes:
        cfg = _config(self)
        extra = {
            "scan_interval": cfg.scan_interval,
            "volume_scan_interval": cfg.volume_scan_interval,
        }
        return scan.snapshot().json_bytes(cfg.large_volume_bytes, extra)


class ServersPageHandler(_UsageMixin, BaseHandler):
    """GET /hub/servers: every running server's resource use, refreshed live."""

    @web.authenticated
    @needs_read_usage
    async def get(self) -> None:
        cfg = _config(self)
        html = await self.render_template(
            "servers.html",
            usage_settings={
                "scan_interval": cfg.scan_interval,
                "large_volume_bytes": cfg.large_volume_bytes,
            },
        )
        self.finish(html)


class UsageServersAPIHandler(_UsageMixin, APIHandler):
    """GET /hub/api/usage/servers: the servers page's numbers as JSON."""

    @needs_read_usage
    async def get(self) -> None:
        self.set_header("Cache-Control", "no-store")
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(self.usage_json())


def default_handlers() -> list[tuple[str, type]]:
    return [
        (r"/servers", ServersPageHandler),
        (r"/api/usage/servers", UsageServersAPIHandler),
    ]
